"""install.sh on a host where systemd runs: the unit really starts, sandboxed, and works.

A real systemd boots in private namespaces (systemd_boot.py) with podman.socket;
packaging/install.sh installs from this clone (pip from a local wheelhouse: no
network inside) and enables the service. Then, with the unit's full sandbox:
READY and STATUS reach systemd, the catalog explains the entries, a leaked
allocation staged with a real podman is reported, and released after
`systemctl reload` with repair enabled; the doctor still sees container veths;
a second install.sh changes nothing, and uninstall.sh removes it all.

The tests share one booted system and run in file order (the last uninstalls).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
from pkgtools import DEFAULT_CONFIG, REPO, unavailable, wheelhouse
from systemd_boot import BootedSystemd, missing_requirements

pytestmark = [pytest.mark.e2e, pytest.mark.packaging]

STARTED = "7343d52151cd40e5a098be6a21c0a8fb"
RELOADED = "657ba90b6bfc4ebbb4d22613f4dba0d2"
RELOAD_FAILED = "5f6bbb6535b4414e83b4846faa5ff783"
LEAK_FOUND = "2a1ab089f47e4fffb0990e8d31a14487"
RELEASED = "1fd7bf226ecf426080036fc4f217a35f"
NETWORK, SUBNET, IP, OTHER_IP = "pkgnet", "172.19.40.0/24", "172.19.40.11", "172.19.40.12"
REPAIR_CONFIG = """\
[repair]
enabled = true
grace_seconds = 1

[watch]
resync_seconds = 2
"""
INSTALLED = ("/opt/ipamguard", "/usr/local/bin/ipamguard",
             "/usr/local/lib/systemd/system/ipamguard.service",
             "/usr/local/lib/systemd/catalog/ipamguard.catalog")  # fmt: skip


@pytest.fixture(scope="module")
def host() -> Iterator[BootedSystemd]:
    reason = missing_requirements()
    if reason:
        unavailable(reason)
    sandbox = _sandbox_module()
    if sandbox.missing_requirements():
        unavailable(sandbox.missing_requirements())
    house = wheelhouse()
    image = sandbox.busybox_image_tar()
    with BootedSystemd() as booted:
        booted.wheelhouse = house  # type: ignore[attr-defined]
        booted.image = image  # type: ignore[attr-defined]
        booted.first_install = install(booted)  # type: ignore[attr-defined]
        yield booted


def _sandbox_module():  # type: ignore[no-untyped-def]
    import sandbox  # tests/e2e (put on sys.path by systemd_boot)

    return sandbox


def install(host: BootedSystemd) -> subprocess.CompletedProcess[str]:
    house = host.wheelhouse  # type: ignore[attr-defined]
    return host.run(
        "bash", REPO / "packaging" / "install.sh",
        env={"IPAMGUARD_PIP_ARGS": f"--no-index --find-links {house}"},
        timeout=600,
    )  # fmt: skip


def show(host: BootedSystemd, *props: str) -> dict[str, str]:
    out = host.run("systemctl", "show", "ipamguard.service", *(f"-p{p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def entries(host: BootedSystemd, message_id: str) -> list[dict[str, str]]:
    out = host.run(
        "journalctl", "-u", "ipamguard", "-o", "json", "--no-pager", f"MESSAGE_ID={message_id}"
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def wait_entry(host: BootedSystemd, message_id: str, timeout: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = entries(host, message_id)
        if found:
            return found[-1]
        time.sleep(0.25)
    log = host.run("journalctl", "-u", "ipamguard", "--no-pager", "-o", "cat").stdout
    pytest.fail(f"no journal entry {message_id} within {timeout} s; the unit's log:\n{log}")


def podman(host: BootedSystemd, *args: str) -> str:
    return host.run("podman", *args, timeout=120).stdout


# --------------------------------------------------------------------------- tests


def test_install_enables_and_starts_the_service(host: BootedSystemd) -> None:
    first = host.first_install.stdout  # type: ignore[attr-defined]
    assert "installed /usr/local/lib/systemd/system/ipamguard.service" in first
    state = show(host, "ActiveState", "SubState", "UnitFileState", "StatusText", "MainPID")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    assert state["UnitFileState"] == "enabled"
    assert re.match(r"\d+ networks?, \d+ allocations?, \d+ open findings?, repair off",
                    state["StatusText"]), state  # fmt: skip
    assert host.run("systemctl", "is-active", "podman.socket").stdout.strip() == "active"
    assert host.run("systemctl", "is-enabled", "podman.socket").stdout.strip() == "enabled"
    wait_entry(host, STARTED)
    config = host.path("/etc/ipamguard/ipamguard.toml").read_bytes()
    assert config == (REPO / "packaging" / "ipamguard.toml").read_bytes()


def test_the_sandbox_is_in_force(host: BootedSystemd) -> None:
    pid = show(host, "MainPID")["MainPID"]
    status = host.path(f"/proc/{pid}/status").read_text()
    # one capability, CAP_NET_RAW (bit 13: 0x2000), for the probes on podman's bridges
    for line in ("CapEff", "CapBnd", "CapAmb"):
        assert re.search(rf"^{line}:\s+0+2000$", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status
    assert re.search(r"^Seccomp:\s+2$", status, re.M), status
    # the file system is read-only but for what the unit lists
    probe = host.run("nsenter", "-t", pid, "-m", "touch", "/etc/ipamguard/x", check=False)
    assert "Read-only file system" in probe.stderr
    assert host.path("/var/lib/ipamguard").stat().st_mode & 0o777 == 0o700


def test_the_catalog_explains_the_entries(host: BootedSystemd) -> None:
    listed = host.run("journalctl", "--list-catalog").stdout
    assert STARTED in listed and RELEASED in listed
    explained = host.run("journalctl", "-x", "-u", "ipamguard", "--no-pager").stdout
    assert "ipamguard started watching podman's IP allocations" in explained


def test_a_leak_is_reported_then_released_after_reload(host: BootedSystemd) -> None:
    podman(host, "import", "--quiet", str(host.image), "localhost/bb")  # type: ignore[attr-defined]
    podman(host, "network", "create", "--subnet", SUBNET, NETWORK)
    # a neighbour keeps the network's bridge up: before releasing, the daemon probes the
    # address there (the sandbox denies it podman's environment: only the network can
    # then say that nothing holds the address; with no bridge and only a loopback
    # interface in sight, it cannot tell a deleted bridge from a private namespace)
    podman(host, "run", "-d", "--name", "neighbour", "--network", NETWORK,
           "localhost/bb", "sleep", "1000")  # fmt: skip
    podman(host, "run", "-d", "--name", "leaky", "--network", NETWORK, "--ip", IP,
           "localhost/bb", "sleep", "1000")  # fmt: skip
    db = "/run/containers/networks/ipam.db"
    host.run("cp", db, "/run/ipam.db.copy")
    podman(host, "rm", "-f", "-t", "0", "leaky")
    host.run("cp", "/run/ipam.db.copy", db)  # the seed incident: the address leaked

    found = wait_entry(host, LEAK_FOUND)
    assert (found["IPAMGUARD_IP"], found["IPAMGUARD_NETWORK"]) == (IP, NETWORK)
    assert entries(host, RELEASED) == []  # alert only, as shipped

    host.path("/etc/ipamguard/ipamguard.toml").write_text(REPAIR_CONFIG)
    host.run("systemctl", "reload", "ipamguard")
    wait_entry(host, RELOADED)
    released = wait_entry(host, RELEASED)
    assert released["IPAMGUARD_IP"] == IP
    backup = released["IPAMGUARD_BACKUP"]
    assert backup.startswith("/var/lib/ipamguard/backups/")
    assert host.path(backup).stat().st_size > 0
    podman(host, "run", "--rm", "--network", NETWORK, "--ip", IP, "localhost/bb", "true")


def test_a_bad_config_on_reload_keeps_the_service_running(host: BootedSystemd) -> None:
    config = host.path("/etc/ipamguard/ipamguard.toml")
    good = config.read_text()
    pid = show(host, "MainPID")["MainPID"]
    config.write_text("[repair]\ngrace_seconds = 'soon'\n")
    try:
        host.run("systemctl", "reload", "ipamguard")
        wait_entry(host, RELOAD_FAILED)
        assert show(host, "ActiveState", "MainPID") == {"ActiveState": "active", "MainPID": pid}
    finally:
        config.write_text(good)


def test_another_storage_roots_container_stays_live_inside_the_sandbox(
    host: BootedSystemd,
) -> None:
    """podman's API does not list it: only runc's state and conmon's command line
    (other processes' /proc entries) show that it lives. Under the unit's sandbox too."""
    other = ("--root", "/var/lib/containers/other", "--runroot", "/run/other")
    podman(host, "save", "-o", "/run/bb.tar", "localhost/bb")
    podman(host, *other, "load", "-q", "-i", "/run/bb.tar")
    podman(host, *other, "run", "-d", "--name", "elsewhere", "--network", NETWORK,
           "--ip", OTHER_IP, "localhost/bb", "sleep", "1000")  # fmt: skip
    assert "elsewhere" not in podman(host, "ps", "-a", "--format", "{{.Names}}")
    report = json.loads(sandboxed(host, "/opt/ipamguard/bin/ipamguard check --json"))
    assert report["liveness"]["complete"], report
    assert report["findings"] == [], report


def test_the_doctor_sees_container_veths_inside_the_sandbox(host: BootedSystemd) -> None:
    """The daemon's doctor part under the unit's own sandbox (RestrictAddressFamilies=,
    PrivateUsers=, ...)."""
    podman(host, "run", "-d", "--name", "linked", "--network", NETWORK, "localhost/bb",
           "sleep", "1000")  # fmt: skip
    report = json.loads(sandboxed(host, "/opt/ipamguard/bin/ipamguard doctor --json"))
    plain = json.loads(host.run("ipamguard", "doctor", "--json", check=False).stdout)
    assert plain["container_veths"], "podman's veth is not seen even without the sandbox"
    assert report["container_veths"] == plain["container_veths"]


def test_status_and_metrics_under_the_units_sandbox(host: BootedSystemd) -> None:
    """The status file in the unit's RuntimeDirectory, read by an unprivileged user;
    the metrics textfile written once the README's drop-in allows its directory."""
    nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    deadline = time.monotonic() + 30  # (re)started by an earlier test: its first reconcile
    while True:
        done = host.run(*nobody, "ipamguard", "status", "--json", check=False)
        report = json.loads(done.stdout)
        if report["state"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert report["state"]["running"] and report["state"]["pid"] == int(
        show(host, "MainPID")["MainPID"]
    )
    assert (done.returncode, report["status"]) in ((0, "healthy"), (1, "findings")), report
    assert host.path("/run/ipamguard").stat().st_mode & 0o777 == 0o755

    textfile = "/var/lib/prometheus/node-exporter/ipamguard.prom"
    config = host.path("/etc/ipamguard/ipamguard.toml")
    shipped = DEFAULT_CONFIG.read_text()  # (an earlier test may have changed the host's)
    dropin = host.path("/etc/systemd/system/ipamguard.service.d/metrics.conf")
    host.run(
        "mkdir",
        "-p",
        "/var/lib/prometheus/node-exporter",
        "/etc/systemd/system/ipamguard.service.d",
    )
    dropin.write_text("[Service]\nReadWritePaths=/var/lib/prometheus/node-exporter\n")
    commented = f'# textfile = "{textfile}"'
    assert commented in shipped  # the shipped example, uncommented
    config.write_text(shipped.replace(commented, commented[2:]))
    try:
        host.run("systemctl", "daemon-reload")
        host.run("systemctl", "restart", "ipamguard")
        deadline = time.monotonic() + 30
        while not host.path(textfile).exists():
            assert time.monotonic() < deadline, host.run("journalctl", "-u", "ipamguard").stdout
            time.sleep(0.2)
        text = host.path(textfile).read_text()
        assert (
            "# TYPE ipamguard_findings gauge" in text and "ipamguard_podman_reachable 1.0" in text
        )
        assert host.path(textfile).stat().st_mode & 0o777 == 0o644
    finally:
        config.write_text(shipped)
        dropin.unlink()
        host.run("systemctl", "daemon-reload")
        host.run("systemctl", "restart", "ipamguard")


def test_a_second_install_changes_nothing(host: BootedSystemd) -> None:
    pid = show(host, "MainPID")["MainPID"]
    before = {p: host.path(p).lstat().st_mtime_ns for p in INSTALLED}
    again = install(host).stdout
    assert "nothing changed" in again, again
    assert not any(w in again for w in ("installed /", "restarted", "started", "pip")), again
    assert {p: host.path(p).lstat().st_mtime_ns for p in INSTALLED} == before
    assert show(host, "MainPID")["MainPID"] == pid


def test_uninstall_removes_it_all_but_config_and_backups(host: BootedSystemd) -> None:
    host.run("bash", REPO / "packaging" / "uninstall.sh")
    assert host.run("systemctl", "is-active", "ipamguard", check=False).stdout.strip() in (
        "inactive",
        "unknown",
    )
    for path in INSTALLED:
        assert not host.path(path).exists(), path
    assert host.path("/etc/ipamguard/ipamguard.toml").exists()
    assert any(host.path("/var/lib/ipamguard/backups").iterdir())
    host.run("bash", REPO / "packaging" / "uninstall.sh", "--purge")
    assert not host.path("/etc/ipamguard").exists()
    assert not host.path("/var/lib/ipamguard").exists()


def sandboxed(host: BootedSystemd, command: str) -> str:
    """stdout of command run once under the installed unit's sandbox (a probe unit)."""
    unit = host.path("/usr/local/lib/systemd/system/ipamguard.service").read_text()
    host.path("/run/systemd/system/ipamguard-probe.service").write_text(probe_unit(unit, command))
    host.run("systemctl", "daemon-reload")
    host.run("systemctl", "start", "ipamguard-probe.service", check=False)
    return host.path("/run/ipamguard-probe.out").read_text()


def probe_unit(unit: str, command: str) -> str:
    """The unit's sandbox around a one-shot command whose stdout goes to a file."""
    dropped = ("Type=", "NotifyAccess=", "WatchdogSec=", "Restart", "ExecReload=", "ExecStart=")
    lines = []
    for line in unit.split("[Install]")[0].splitlines():
        if line.startswith(dropped):
            continue
        lines.append(line)
        if line == "[Service]":
            lines += [
                "Type=oneshot",
                f"ExecStart={command}",
                "StandardOutput=truncate:/run/ipamguard-probe.out",
            ]
    return "\n".join(lines) + "\n"
