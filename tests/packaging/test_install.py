"""packaging/install.sh and uninstall.sh into a throwaway root (--root): the files,
their modes, the unit they install, and that a second run changes nothing.

No systemd is needed: with --root the unit is enabled offline (a symlink), nothing
is started. tests/packaging/test_booted_systemd.py runs install.sh where systemd runs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pkgtools import CATALOG, DEFAULT_CONFIG, REPO, require_tools, run, unit_for, wheelhouse

pytestmark = pytest.mark.packaging

INSTALL = REPO / "packaging" / "install.sh"
UNINSTALL = REPO / "packaging" / "uninstall.sh"
VENV = "/opt/ipamguard"
UNIT = "/usr/local/lib/systemd/system/ipamguard.service"
CATALOG_PATH = "/usr/local/lib/systemd/catalog/ipamguard.catalog"
CONFIG = "/etc/ipamguard/ipamguard.toml"
LINK = "/usr/local/bin/ipamguard"
WANTS = "/etc/systemd/system/multi-user.target.wants/ipamguard.service"


def install(root: Path, *args: str) -> str:
    env = {"IPAMGUARD_PIP_ARGS": f"--no-index --find-links {wheelhouse()}"}
    return run(["bash", INSTALL, "--root", root, *args], env=env).stdout


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """path -> (mode, size, mtime_ns, link target) of everything under root."""
    out = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            st = path.lstat()
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, target)
    return out


def at(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    require_tools("python3", "systemctl", "journalctl", "sha256sum")
    root = tmp_path_factory.mktemp("root")
    return root, install(root)


def test_files_land_where_the_unit_expects_them(installed: tuple[Path, str]) -> None:
    root, _ = installed
    unit = at(root, UNIT).read_text()
    assert unit == unit_for(f"{VENV}/bin/ipamguard")  # only ExecStart's program differs
    assert at(root, CATALOG_PATH).read_bytes() == CATALOG.read_bytes()
    assert at(root, CONFIG).read_bytes() == DEFAULT_CONFIG.read_bytes()
    assert os.readlink(at(root, LINK)) == f"{VENV}/bin/ipamguard"
    assert os.readlink(at(root, WANTS)) == UNIT  # enabled offline
    for path in (UNIT, CATALOG_PATH, CONFIG):
        assert stat.S_IMODE(at(root, path).stat().st_mode) == 0o644, path
    # the catalog was compiled into the journal's database of that root
    assert at(root, "/var/lib/systemd/catalog/database").exists()


def test_the_installed_program_runs(installed: tuple[Path, str]) -> None:
    root, _ = installed
    program = at(root, f"{VENV}/bin/ipamguard")
    assert run([program, "--version"]).stdout.startswith("ipamguard ")
    assert "--config" in run([program, "daemon", "--help"]).stdout


def test_the_manual_page_is_built_from_help(installed: tuple[Path, str]) -> None:
    require_tools("help2man", "man")
    root, _ = installed
    page = at(root, "/usr/local/share/man/man8/ipamguard.8")
    text = run(["man", "-l", "-P", "cat", page], env={"MANWIDTH": "80"}).stdout
    assert "ipamguard daemon" in text and "/etc/ipamguard/ipamguard.toml" in text


def test_a_second_run_changes_nothing(installed: tuple[Path, str]) -> None:
    root, _ = installed
    before = snapshot(root)
    again = install(root)
    assert again == "ipamguard: already installed and up to date: nothing changed\n", again
    assert snapshot(root) == before


def test_an_existing_config_is_never_overwritten(tmp_path: Path) -> None:
    require_tools("python3", "systemctl")
    config = at(tmp_path, CONFIG)
    config.parent.mkdir(parents=True)
    config.write_text("[repair]\nenabled = true\n")
    config.chmod(0o600)
    install(tmp_path, "--no-start")
    assert config.read_text() == "[repair]\nenabled = true\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert not at(tmp_path, WANTS).exists()  # --no-start: not enabled either


def test_uninstall_keeps_config_and_backups_unless_purged(tmp_path: Path) -> None:
    require_tools("python3", "systemctl")
    install(tmp_path)
    backups = at(tmp_path, "/var/lib/ipamguard/backups")
    backups.mkdir(parents=True)
    (backups / "ipam.db.bak").write_bytes(b"x")

    run(["bash", UNINSTALL, "--root", tmp_path])
    for path in (VENV, UNIT, CATALOG_PATH, LINK, WANTS):
        assert not os.path.lexists(at(tmp_path, path)), path
    assert at(tmp_path, CONFIG).exists() and (backups / "ipam.db.bak").exists()

    run(["bash", UNINSTALL, "--root", tmp_path])  # again: nothing to do, no error
    run(["bash", UNINSTALL, "--root", tmp_path, "--purge"])
    assert not at(tmp_path, "/etc/ipamguard").exists()
    assert not at(tmp_path, "/var/lib/ipamguard").exists()


def test_unknown_arguments_are_refused(tmp_path: Path) -> None:
    for script in (INSTALL, UNINSTALL):
        result = run(["bash", script, "--root", tmp_path, "--bogus"], check=False)
        assert result.returncode != 0 and "--bogus" in result.stderr


def test_user_install_and_uninstall(tmp_path: Path) -> None:
    """--user: everything under the user's home, the user unit, nothing system-wide."""
    require_tools("python3", "sha256sum")
    root, home = tmp_path / "root", "/home/u"
    env = {"IPAMGUARD_PIP_ARGS": f"--no-index --find-links {wheelhouse()}", "HOME": home}
    out = run(["bash", INSTALL, "--user", "--root", root, "--no-start"], env=env).stdout
    venv = f"{home}/.local/share/ipamguard/venv"
    unit = at(root, f"{home}/.config/systemd/user/ipamguard.service").read_text()
    source = (REPO / "systemd" / "user" / "ipamguard.service").read_text()
    program = f"ExecStart={venv}/bin/ipamguard "
    assert unit == source.replace("ExecStart=/usr/bin/ipamguard ", program)
    assert "ExecStart=" + venv + "/bin/ipamguard daemon --user" in unit
    assert at(root, f"{home}/.config/ipamguard/ipamguard.toml").read_bytes() == (
        DEFAULT_CONFIG.read_bytes()
    )
    assert os.readlink(at(root, f"{home}/.local/bin/ipamguard")) == f"{venv}/bin/ipamguard"
    assert not at(root, "/opt").exists() and not at(root, "/etc").exists()
    assert not at(root, "/usr").exists(), "a user install wrote system files"
    assert "installed" in out
    again = run(["bash", INSTALL, "--user", "--root", root, "--no-start"], env=env).stdout
    assert "already installed and up to date" in again
    run(["bash", UNINSTALL, "--user", "--root", root], env={"HOME": home})
    assert not at(root, f"{home}/.config/systemd/user/ipamguard.service").exists()
    assert not at(root, f"{home}/.local/share/ipamguard").exists()
    assert at(root, f"{home}/.config/ipamguard/ipamguard.toml").exists()  # kept
    run(["bash", UNINSTALL, "--user", "--root", root, "--purge"], env={"HOME": home})
    assert not at(root, f"{home}/.config/ipamguard").exists()


def test_user_install_refuses_root() -> None:
    result = run(["bash", INSTALL, "--user"], check=False)
    if os.geteuid() == 0:
        assert result.returncode != 0 and "not as root" in result.stderr
