"""The Debian package: built offline with dpkg-buildpackage (packaging/build-deb.sh),
lintian without errors, and unpacked into a throwaway root (dpkg -x) to prove that
the files land where the unit expects them and that the program runs from there.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from pkgtools import (
    CATALOG,
    DEFAULT_CONFIG,
    REPO,
    pyproject_version,
    require_tools,
    run,
    unavailable,
    unit_for,
)
from systemd_boot import BootedSystemd, missing_requirements

pytestmark = pytest.mark.packaging


def deb_file(built_deb: Path) -> Path:
    (deb,) = built_deb.glob("ipamguard_*_all.deb")
    return deb


@pytest.fixture(scope="module")
def unpacked(built_deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("debroot")
    run(["dpkg-deb", "-x", deb_file(built_deb), root])
    return root


def field(built_deb: Path, name: str) -> str:
    return run(["dpkg-deb", "-f", deb_file(built_deb), name]).stdout.strip()


def test_lintian_reports_no_errors_nor_warnings(built_deb: Path) -> None:
    report = (built_deb / "ipamguard.lintian").read_text()
    tags = [line for line in report.splitlines() if re.match(r"^[EW]: ", line)]
    assert tags == [], report


def test_version_follows_pyproject(built_deb: Path) -> None:
    assert field(built_deb, "Version").split("-")[0] == pyproject_version()


def test_dependencies_are_distribution_packages(built_deb: Path) -> None:
    depends = field(built_deb, "Depends")
    for package in (
        "python3-dbus-next", "python3-structlog", "python3-pyinotify", "python3-xxhash",
    ):  # fmt: skip
        assert package in depends
    assert "prometheus" not in depends  # the metrics' text format is written without it
    assert re.search(r"python3(:any)? \(>= 3\.11", depends), depends


def test_the_files_land_where_the_unit_expects_them(unpacked: Path) -> None:
    unit = (unpacked / "lib/systemd/system/ipamguard.service").read_text()
    assert unit == unit_for("/usr/bin/ipamguard")  # the unit as in the source tree
    user_unit = unpacked / "usr/lib/systemd/user/ipamguard.service"  # systemctl --user
    assert user_unit.read_text() == (REPO / "systemd/user/ipamguard.service").read_text()
    assert (unpacked / "usr/bin/ipamguard").stat().st_mode & 0o111
    assert (unpacked / "etc/ipamguard/ipamguard.toml").read_bytes() == DEFAULT_CONFIG.read_bytes()
    catalog = unpacked / "usr/lib/systemd/catalog/ipamguard.catalog"
    assert catalog.read_bytes() == CATALOG.read_bytes()
    assert (unpacked / "usr/share/man/man8/ipamguard.8.gz").exists()
    assert (unpacked / "usr/lib/python3/dist-packages/ipamguard/cli/__init__.py").exists()


def test_the_config_is_a_conffile(built_deb: Path, tmp_path: Path) -> None:
    run(["dpkg-deb", "-e", deb_file(built_deb), tmp_path / "DEBIAN"])
    assert (tmp_path / "DEBIAN" / "conffiles").read_text().split() == [
        "/etc/ipamguard/ipamguard.toml"
    ]
    postinst = (tmp_path / "DEBIAN" / "postinst").read_text()
    assert "deb-systemd-helper enable 'ipamguard.service'" in postinst
    postrm = (tmp_path / "DEBIAN" / "postrm").read_text()
    assert "rm -rf /var/lib/ipamguard" in postrm  # purge: the backups go too


def test_the_unpacked_program_runs(unpacked: Path) -> None:
    env = {"PYTHONPATH": str(unpacked / "usr/lib/python3/dist-packages")}
    program = unpacked / "usr/bin/ipamguard"
    version = run(["/usr/bin/python3", program, "--version"], env=env).stdout
    assert version.strip() == f"ipamguard {pyproject_version()}"
    assert "--config" in run(["/usr/bin/python3", program, "daemon", "--help"], env=env).stdout
    # the daemon's modules import with Debian's own dependencies
    imported = run(
        ["/usr/bin/python3", "-c", "import ipamguard.daemon.app, ipamguard.daemon.db_watch"],
        env=env,
    )
    assert imported.returncode == 0


def test_the_unpacked_unit_verifies_with_its_manual_page(unpacked: Path, tmp_path: Path) -> None:
    require_tools("systemd-analyze", "man")
    unit = tmp_path / "ipamguard.service"
    text = (unpacked / "lib/systemd/system/ipamguard.service").read_text()
    unit.write_text(unit_for(str(unpacked / "usr/bin/ipamguard"), text))
    result = run(
        ["systemd-analyze", "verify", unit],
        env={"MANPATH": str(unpacked / "usr/share/man")},
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_catalog_compiles(unpacked: Path) -> None:
    require_tools("journalctl")
    run(["journalctl", f"--root={unpacked}", "--update-catalog"])
    listed = run(["journalctl", f"--root={unpacked}", "--list-catalog"]).stdout
    ids = re.findall(r"^-- ([0-9a-f]{32})$", CATALOG.read_text(), re.M)
    assert ids and all(i in listed for i in ids)


@pytest.mark.e2e
def test_the_package_installs_and_runs_under_systemd(built_deb: Path) -> None:
    """dpkg -i on a booted systemd (systemd_boot.py; Debian's python3-* come from this
    host): enabled and started by the maintainer scripts, podman asked through its
    API, stopped by removal, configuration and backups gone after a purge."""
    reason = missing_requirements()
    if reason:
        unavailable(reason)
    with BootedSystemd() as host:
        host.run("rm", "-f", "/usr/sbin/policy-rc.d")  # a container image's "start nothing"
        host.path("/root/ipamguard.deb").write_bytes(deb_file(built_deb).read_bytes())
        host.run("dpkg", "-i", "/root/ipamguard.deb")
        state = wait_started(host)
        assert state["ActiveState"] == "active", state
        assert state["UnitFileState"] == "enabled", state
        assert "repair off" in state["StatusText"], state
        assert "podman unreachable" not in state["StatusText"], state
        host.run("dpkg", "--purge", "ipamguard")
        assert host.run("systemctl", "is-active", "ipamguard", check=False).stdout.strip() in (
            "inactive",
            "unknown",
        )
        for gone in ("/etc/ipamguard", "/var/lib/ipamguard", "/usr/bin/ipamguard"):
            assert not host.path(gone).exists(), gone


def wait_started(host: BootedSystemd, timeout: float = 30) -> dict[str, str]:
    """systemctl show of the unit once the daemon told systemd its first status."""
    deadline = time.monotonic() + timeout
    state: dict[str, str] = {}
    while time.monotonic() < deadline:
        out = host.run(
            "systemctl", "show", "ipamguard", "-pActiveState", "-pUnitFileState", "-pStatusText"
        ).stdout
        state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if state.get("StatusText"):
            return state
        time.sleep(0.2)
    log = host.run("journalctl", "-u", "ipamguard", "--no-pager").stdout
    pytest.fail(f"ipamguard did not report a status within {timeout} s: {state}\n{log}")
