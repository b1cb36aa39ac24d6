"""The first rule against a real podman: never release an allocation of a live container.

Each test is one of the ways an adversarial pass broke the rule on podman 4.3, staged
exactly (strace holds podman's windows open), with ipamguard repairing at grace 0:

1. a container whose process died and whose cleanup never ran (conmon's exit command
   fails, as when the OOM killer takes it): podman says stopped/exited, its network
   namespace and addresses are still set up, ``podman start`` reuses them;
2. ipam.db changing between the look a decision is made on and the write: the same
   key released and allocated again by a ``podman stop`` + ``start`` (ABA), and a
   ``restore`` whose plan predates a container's start;
3. a container of another storage root starting with ``CONTAINERS_STORAGE_CONF``
   (no ``--root`` on its command line), and through ``podman --remote`` to a second
   API service of that root, held between its network setup and its conmon.

(The fourth, a damaged branch key, is in tests/bolt.) Every test ends with the
address still held by its container, podman refusing to give it to a second one,
and Go's bbolt check clean.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from cli_helpers import as_json, ig, show
from oracle_tool import Oracle
from sandbox import IMAGE, IPAM_DB, PODMAN_SOCKET, REPO_ROOT, Sandbox

pytestmark = pytest.mark.e2e

NET, SUBNET = "ipg-s", "172.19.30.0/24"
ALT_CONF = "/etc/containers/alt-storage.conf"
# conmon's execve that launches a container (podman may run ``conmon --version`` first;
# strace holds every conmon execve, that one too)
LAUNCH = '"--api-version"'


# --------------------------------------------------------------------------- helpers


def held(oracle: Oracle, sb: Sandbox) -> dict[tuple[str, str], str]:
    """{(network, ip): container ID} as Go's bbolt reads ipam.db."""
    return oracle.ipam_held(sb.host_path(IPAM_DB))


def run_static(sb: Sandbox, name: str, ip: str, *extra: str) -> str:
    return sb.podman(
        "run", "-d", "--name", name, "--network", f"{NET}:ip={ip}", *extra, IMAGE, "sleep", "1000"
    ).stdout.strip()


def twin_refused(sb: Sandbox, ip: str, holder: str) -> bool:
    """Does podman refuse ``ip`` to a new container because ``holder`` has it?"""
    res = sb.podman("run", "-d", "--name", f"twin-{ip.replace('.', '-')}", "--network",
                    f"{NET}:ip={ip}", IMAGE, "sleep", "1000", check=False)  # fmt: skip
    if res.returncode == 0:
        sb.podman("rm", "-f", "-t0", f"twin-{ip.replace('.', '-')}")
    return f"already allocated to container ID {holder}" in res.stderr


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def entered(sb: Sandbox, trace: str, needle: str, count: int = 1) -> bool:
    """Has the traced process entered ``count`` syscalls naming ``needle``? (strace
    writes a delayed syscall's line as it enters it, before the delay.)"""
    path = sb.host_path(trace)
    return path.exists() and path.read_text(errors="replace").count(needle) >= count


class HeldApi:
    """podman's API behind a proxy that holds the first connection until ``release()``:
    the test acts while ipamguard waits for its first answer (``held`` is set then)."""

    def __init__(self, sb: Sandbox, path: str = "/run/ipg-held.sock") -> None:
        self.url = f"unix://{path}"
        self.upstream = str(sb.host_path(PODMAN_SOCKET))
        self.held = threading.Event()
        self._release = threading.Event()
        self._first = True
        self.errors: list[str] = []  # why the proxy could not reach podman, if ever
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(sb.host_path(path)))
        self._server.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self._release.set()
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            first, self._first = self._first, False
            threading.Thread(target=self._pipe, args=(client, first), daemon=True).start()

    def _pipe(self, client: socket.socket, hold: bool) -> None:
        if hold:
            self.held.set()
            self._release.wait(60)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.upstream)
        except OSError as e:
            self.errors.append(f"connecting to podman's socket: {e!r}")
            client.close()
            upstream.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_copy, args=(a, b), daemon=True).start()


def _copy(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)


def repair_repeats(sb: Sandbox, *args: str) -> dict[str, Any]:
    res = ig(sb, "repair", "--yes", "--grace", "0", "--kind", "leaked,stale", "--json", *args)
    return as_json(res)


def released_ids(doc: dict[str, Any]) -> set[str]:
    return {f["container_id"] for f in doc["released"]}


# --------------------------------------------------------------------------- 1


def test_stopped_but_not_torn_down_is_never_released(sandbox: Sandbox, oracle: Oracle) -> None:
    """conmon's cleanup never runs (its execve of podman's exit command fails), then the
    container's process is killed: podman reports it stopped or exited, with its network
    namespace, veth and addresses still set up. Not a leak: ``podman start`` reuses them."""
    sandbox.network_create(NET, SUBNET)
    cid = run_static(sandbox, "oom", "172.19.30.11")
    sandbox.start_podman_service()
    conmon, pid = sandbox.podman(
        "inspect", "--format", "{{.State.ConmonPid}} {{.State.Pid}}", "oom"
    ).stdout.split()
    tracer = sandbox.popen(
        "strace", "-f", "-qq", "-o", "/dev/null", "-p", conmon,
        "-e", "trace=execve", "-e", "inject=execve:error=ENOENT",
    )  # fmt: skip
    wait_for("strace to attach", lambda: "TracerPid:\t0" not in _status(sandbox, conmon))
    sandbox.run("kill", "-9", pid)
    wait_for("conmon to exit", lambda: not sandbox.host_path(f"/proc/{conmon}").exists())
    sandbox.signal(tracer)
    state = sandbox.podman("inspect", "--format", "{{.State.Status}}", "oom").stdout.strip()
    assert state in ("stopped", "exited"), state
    key = sandbox.podman(
        "inspect", "--format", "{{.NetworkSettings.SandboxKey}}", "oom"
    ).stdout.strip()
    assert key, "podman says its network is torn down: the cleanup did run"

    doc = as_json(ig(sandbox, "check", "--json", rc=0))  # not a finding at all
    assert doc["findings"] == [], doc
    assert released_ids(repair_repeats(sandbox)) == set()
    assert held(oracle, sandbox)[(NET, "172.19.30.11")] == cid
    assert twin_refused(sandbox, "172.19.30.11", cid)
    sandbox.podman("start", "oom")
    ip_format = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    ips = sandbox.podman("inspect", "--format", ip_format, "oom")
    assert ips.stdout.strip() == "172.19.30.11"
    assert held(oracle, sandbox)[(NET, "172.19.30.11")] == cid
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []


def _status(sb: Sandbox, pid: str) -> str:
    try:
        return sb.host_path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "TracerPid:\t1"  # gone: nothing to wait for


# --------------------------------------------------------------------------- 2


def test_a_stop_and_start_between_the_look_and_the_write(sandbox: Sandbox, oracle: Oracle) -> None:
    """The adversarial pass's stop/start loop, held open: ipam.db is read while the
    container runs; podman stops it (releasing its address) before the API answers
    ipamguard (a proxy holds that answer), so it is judged stale; then, before
    ipamguard takes the network lock (strace holds its open), ``podman start``
    allocates the same address afresh and is held before its conmon (strace holds
    conmon's execve), so no runtime state or conmon shows it yet. The keys under the
    lock look the same; the file is not the one judged. Nothing may be released.

    The staging itself can miss its window (CI once saw podman's API fail right after
    the stop, so repair refused before the lock: right for ipamguard, no test of the
    fence): it is staged again once, and a second miss fails with what was seen."""
    sandbox.network_create(NET, SUBNET)
    cid = run_static(sandbox, "flip", "172.19.30.21")
    sandbox.start_podman_service()
    missed: list[str] = []
    for attempt in range(2):
        staged = _stage_stop_start(sandbox, oracle, cid, attempt)
        if isinstance(staged, str):
            missed.append(staged)
            sandbox.podman("start", "flip")  # running again, as the staging needs
            sandbox.restart_podman_service_if_gone()
            continue
        out, err = staged
        break
    else:
        pytest.fail("the window was missed twice:\n" + "\n---\n".join(missed))
    doc = json.loads(out)
    assert released_ids(doc) == set(), doc
    assert "changed since it was judged" in err, (out, err)  # the fence saw it, looked again
    assert held(oracle, sandbox)[(NET, "172.19.30.21")] == cid
    assert twin_refused(sandbox, "172.19.30.21", cid)
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []


def _stage_stop_start(
    sandbox: Sandbox, oracle: Oracle, cid: str, attempt: int
) -> tuple[str, str] | str:
    """Stage the stop/start race once: repair's (stdout, stderr), or what was seen
    when repair ended before the network lock (the window missed)."""
    conmon = sandbox.podman("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
    api = HeldApi(sandbox, f"/run/ipg-held-{attempt}.sock")
    lock = "/run/lock/netavark.lock"
    sandbox.run("touch", lock)
    trace, start_trace = f"/var/tmp/repair-{attempt}.strace", f"/var/tmp/start-{attempt}.strace"
    repair = sandbox.popen(
        "strace", "-f", "-qq", "-o", trace, "-P", lock, "-e", "trace=openat",
        "-e", "inject=openat:delay_enter=10000000:when=1",
        sandbox.python, "-m", "ipamguard", "repair", "--yes", "--grace", "0",
        "--kind", "leaked,stale", "--json", "--url", api.url,
        env={"PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert api.held.wait(30), "repair never asked podman"
        sandbox.podman("stop", "-t0", "flip")  # podman releases 172.19.30.21
        assert (NET, "172.19.30.21") not in held(oracle, sandbox)
        api.release()
        wait_for(
            "repair to reach the network lock",
            lambda: entered(sandbox, trace, lock) or repair.poll() is not None,
        )
        if repair.poll() is not None:
            out, err = repair.communicate()
            return (
                f"repair ended before the lock (rc {repair.returncode}): {out}{err}"
                f"proxy: {api.errors or 'no error'}; {sandbox.podman_service_status()}"
            )
        start = sandbox.popen(
            "strace", "-f", "-qq", "-o", start_trace, "--detach-on=execve", "-P", conmon,
            "-e", "trace=execve", "-e", "inject=execve:delay_enter=6000000",
            "podman", "start", "flip",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for(
            "the address allocated again",
            lambda: held(oracle, sandbox).get((NET, "172.19.30.21")) == cid,
        )
        wait_for("conmon held", lambda: entered(sandbox, start_trace, LAUNCH))
        assert repair.poll() is None, "the window was missed: repair ended before the start"
        out, err = repair.communicate(timeout=120)
        _, start_err = start.communicate(timeout=60)
    finally:
        api.close()
    assert start.returncode == 0, start_err
    assert repair.returncode in (0, 1), err
    return out, err


def test_restore_plans_on_the_file_it_writes(sandbox: Sandbox, oracle: Oracle) -> None:
    """The restore compares a backup with the live file (it would put a removed
    container's address back); then a container starts (its address allocated) while
    podman's API is slow to answer the restore. Rewriting the file as planned would
    drop that allocation: refused, nothing written."""
    sandbox.network_create(NET, SUBNET)
    run_static(sandbox, "old", "172.19.30.31")
    sandbox.start_podman_service()
    backup = "/var/tmp/before.db"
    sandbox.write_file(backup, sandbox.read_file(IPAM_DB))
    sandbox.podman("rm", "-f", "-t0", "old")  # the restore puts its address back
    api = HeldApi(sandbox)
    restore = sandbox.popen(
        sandbox.python, "-m", "ipamguard", "restore", backup, "--yes", "--json",
        "--backup-dir", "/var/tmp/restore-backups", "--url", api.url,
        env={"PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert api.held.wait(30), "restore never asked podman"
        new = run_static(sandbox, "new", "172.19.30.32")
        api.release()
        out, err = restore.communicate(timeout=120)
    finally:
        api.close()
    assert restore.returncode == 2, (out, err)
    assert "changed since it was judged" in err, err
    assert held(oracle, sandbox)[(NET, "172.19.30.32")] == new
    assert twin_refused(sandbox, "172.19.30.32", new)
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []


# --------------------------------------------------------------------------- 3


def _alt_root(sb: Sandbox) -> dict[str, str]:
    """A second storage root, named only by CONTAINERS_STORAGE_CONF, with the image."""
    sb.write_file(
        ALT_CONF,
        b'[storage]\ndriver = "overlay"\ngraphroot = "/var/lib/containers/alt/storage"\n'
        b'runroot = "/run/containers/alt/storage"\n',
    )
    env = {"CONTAINERS_STORAGE_CONF": ALT_CONF}
    archive = "/var/tmp/bb-image.tar"
    if not sb.host_path(archive).exists():
        sb.podman("save", "--quiet", "-o", archive, IMAGE)
    sb.podman("load", "--quiet", "-i", archive, env=env)
    return env


def _held_in_the_window(sb: Sandbox, oracle: Oracle, cid: str, trace: str) -> None:
    wait_for("the address to be allocated", lambda: cid in held(oracle, sb).values())
    wait_for("conmon's execve to be held", lambda: entered(sb, trace, LAUNCH))
    assert not [p for p in sb.processes() if "conmon" in p and cid in p], "window missed"


def test_another_root_by_environment_is_never_released(sandbox: Sandbox, oracle: Oracle) -> None:
    """``CONTAINERS_STORAGE_CONF=alt.conf podman start x``: no --root on the command
    line, invisible to podman's API (another root), and before its conmon to runtime
    state and conmon too."""
    sandbox.network_create(NET, SUBNET)
    run_static(sandbox, "warm", "172.19.30.40")
    env = _alt_root(sandbox)
    cid = sandbox.podman("create", "--name", "alt", "--network", f"{NET}:ip=172.19.30.41",
                         IMAGE, "sleep", "1000", env=env).stdout.strip()  # fmt: skip
    sandbox.start_podman_service()
    conmon = sandbox.podman("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
    trace = "/var/tmp/start.strace"
    start = sandbox.popen(
        "strace", "-f", "-qq", "-o", trace, "--detach-on=execve", "-P", conmon,
        "-e", "trace=execve", "-e", "inject=execve:delay_enter=6000000",
        "podman", "start", "alt", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _held_in_the_window(sandbox, oracle, cid, trace)
    res = ig(sandbox, "repair", "--yes", "--grace", "0", "--kind", "leaked,stale", rc=2)
    assert "CONTAINERS_STORAGE_CONF" in res.stderr, show(res)
    _, err = start.communicate(timeout=60)
    assert start.returncode == 0, err
    assert held(oracle, sandbox)[(NET, "172.19.30.41")] == cid
    assert twin_refused(sandbox, "172.19.30.41", cid)
    sandbox.podman("rm", "-f", "-t0", "alt", env=env)
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []


def test_another_root_behind_podman_remote_is_never_released(
    sandbox: Sandbox, oracle: Oracle
) -> None:
    """``podman --remote`` to a second API service of another root: the client has no
    storage at all; the service allocates. While it serves, nothing is released."""
    sandbox.network_create(NET, SUBNET)
    run_static(sandbox, "warm", "172.19.30.50")
    env = _alt_root(sandbox)
    alt_url = "unix:///run/alt-podman.sock"
    cid = sandbox.podman("create", "--name", "alt", "--network", f"{NET}:ip=172.19.30.51",
                         IMAGE, "sleep", "1000", env=env).stdout.strip()  # fmt: skip
    sandbox.start_podman_service()
    conmon = sandbox.podman("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
    trace = "/var/tmp/service.strace"
    service = sandbox.popen(
        "strace", "-f", "-qq", "-o", trace, "--detach-on=execve", "-P", conmon,
        "-e", "trace=execve", "-e", "inject=execve:delay_enter=6000000",
        "podman", "system", "service", "--time=0", alt_url, env=env,
    )  # fmt: skip
    wait_for("the second service", lambda: sandbox.host_path("/run/alt-podman.sock").exists())
    start = sandbox.popen(
        "podman", "--remote", "--url", alt_url, "start", "alt",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _held_in_the_window(sandbox, oracle, cid, trace)
    res = ig(sandbox, "repair", "--yes", "--grace", "0", "--kind", "leaked,stale", rc=2)
    assert "system service" in res.stderr and "STORAGE_CONF" in res.stderr, show(res)
    _, err = start.communicate(timeout=60)
    assert start.returncode == 0, err
    assert held(oracle, sandbox)[(NET, "172.19.30.51")] == cid
    assert twin_refused(sandbox, "172.19.30.51", cid)
    sandbox.signal(service)
    sandbox.podman("rm", "-f", "-t0", "alt", env=env)
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []


# --------------------------------------------------------------------------- restarts


def test_a_crash_looping_container_keeps_its_address(sandbox: Sandbox, oracle: Oracle) -> None:
    """``--restart=always``: podman < 5.1 restarts the container without a teardown (it
    holds its address while "exited" for a moment); podman >= 5.1 tears down and sets
    up again. The daemon repairing every kind it may, at grace 0, reconciling after
    every event, never takes the address away."""
    from test_daemon_e2e import daemon

    from ipamguard import messages

    sandbox.network_create(NET, SUBNET)
    cid = sandbox.podman(
        "run", "-d", "--name", "loop", "--restart=always", "--network", f"{NET}:ip=172.19.30.61",
        IMAGE, "sh", "-c", "sleep 0.3; exit 3",
    ).stdout.strip()  # fmt: skip
    sandbox.start_journald()
    sandbox.start_podman_service()
    config = (
        '[repair]\nenabled = true\ngrace_seconds = 0\nkinds = ["leaked", "stale"]\n'
        "[watch]\ndebounce_seconds = 0\n"
    )
    with daemon(sandbox, config):
        deadline = time.monotonic() + 12
        restarts = 0
        while time.monotonic() < deadline:
            state = sandbox.podman("inspect", "--format", "{{.RestartCount}}", "loop")
            restarts = int(state.stdout.strip() or 0)
            time.sleep(0.5)
    assert restarts >= 5, f"the container restarted {restarts} times only"
    released = sandbox.journal_entries(MESSAGE_ID=messages.LEAK_RELEASED)
    assert [e for e in released if e.get("IPAMGUARD_CONTAINER_ID") == cid] == [], released
    sandbox.podman("stop", "-t0", "loop")
    sandbox.podman("start", "loop")  # its own address, still its own
    assert held(oracle, sandbox)[(NET, "172.19.30.61")] == cid
    assert twin_refused(sandbox, "172.19.30.61", cid)
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []


# --------------------------------------------------------------------------- no API socket


def test_the_cli_repairs_the_seed_without_podmans_api(sandbox: Sandbox, oracle: Oracle) -> None:
    """Most hosts never enabled podman.socket: check and repair ask the podman command
    (and say so); the seed incident is healed; live containers stay as they are."""
    sandbox.network_create(NET, SUBNET)
    live = run_static(sandbox, "live", "172.19.30.70")
    leak = sandbox.stage_leak("victim", NET, "172.19.30.71")
    assert not sandbox.host_path(PODMAN_SOCKET).exists()
    res = ig(sandbox, "check", rc=1)
    assert "asked the podman command" in res.stderr, show(res)
    doc = repair_repeats(sandbox)
    assert released_ids(doc) == {leak}, doc
    assert held(oracle, sandbox) == {(NET, "172.19.30.70"): live}
    sandbox.podman("run", "-d", "--name", "again", "--network", f"{NET}:ip=172.19.30.71",
                   IMAGE, "sleep", "1000")  # fmt: skip
    assert twin_refused(sandbox, "172.19.30.70", live)
    assert oracle.check(sandbox.host_path(IPAM_DB)) == []
