"""A Debian 13 (trixie) root for the sandbox's podman 5.4 flavour, built once per clone.

``ensure_root()`` returns tests/.cache/trixie: a ``debootstrap --variant=minbase`` of
trixie with podman 5.4, netavark 1.14, runc, systemd (journald), Python 3.13 and, in
/opt/ipamguard-venv, ipamguard's runtime dependencies plus what its tests import
(pytest, hypothesis, podman-py), installed with the root's own python3.13. ipamguard
itself is not installed there: the sandbox bind-mounts this checkout at the same path
and sets PYTHONPATH, so an edit needs no rebuild.

The build takes a lock (tests/.cache/trixie.lock: parallel sessions build once),
works in a temporary directory and renames the finished root into place, so a
killed build never leaves a half root behind. Two stamps say what a root holds: the
Debian package list (a change rebuilds everything) and the pip requirements (a change
rebuilds the venv only). The sandbox never writes to the root (it runs on an overlay).

    python tests/e2e/trixie.py build            # build if needed, print the time
    python tests/e2e/trixie.py pytest ARGS...   # pytest ARGS with Python 3.13 in the root
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / "tests" / ".cache"
ROOT = CACHE_DIR / "trixie"
LOCK = CACHE_DIR / "trixie.lock"

SUITE = "trixie"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    # podman 5.4 and what it runs; netavark 1.14 needs nft
    "podman", "runc", "netavark", "aardvark-dns", "conmon", "iptables", "nftables",
    "busybox-static",
    # rootless: newuidmap/newgidmap, pasta
    "uidmap", "passt",
    # journald, journalctl, systemd-cat; logger
    "systemd", "bsdutils",
    # Python 3.13 and the tests' tools
    "python3", "python3-venv", "strace", "iproute2", "procps", "util-linux", "ca-certificates",
)  # fmt: skip
VENV = "/opt/ipamguard-venv"  # inside the root
PYTHON = f"{VENV}/bin/python"
# the test extras that the suites need inside the root (not ruff, not mypy)
TEST_REQUIREMENTS = ("pytest", "hypothesis", "podman", "prometheus-client")
PACKAGES_STAMP = ".ipamguard-packages.json"  # in the root
PIP_STAMP = ".ipamguard-pip.json"  # in the venv
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class TrixieError(AssertionError):
    """The root could not be built."""


def missing_requirements() -> str | None:
    """Why the root cannot be built here (None if it can, or if it is built already)."""
    if os.geteuid() != 0:
        return "building the Debian 13 root needs root"
    if _stamp_ok():
        return None
    if shutil.which("debootstrap") is None:
        return "debootstrap is missing (apt-get install debootstrap debian-archive-keyring)"
    return None


def ensure_root(log: bool = True) -> Path:
    """The built root (tests/.cache/trixie), built or brought up to date first if needed."""
    if _stamp_ok() and _pip_ok():
        return ROOT
    reason = missing_requirements()
    if reason:
        raise TrixieError(reason)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    with _locked():
        if not _stamp_ok():
            t0 = time.monotonic()
            _build(log)
            _say(log, f"trixie root built in {time.monotonic() - t0:.0f} s: {ROOT}")
        if not _pip_ok():
            t0 = time.monotonic()
            _install_venv(ROOT)
            _say(log, f"trixie venv installed in {time.monotonic() - t0:.0f} s")
    return ROOT


# --------------------------------------------------------------------------- stamps


def pip_requirements() -> list[str]:
    """ipamguard's runtime dependencies (pyproject.toml) and TEST_REQUIREMENTS."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    test = project.get("optional-dependencies", {}).get("test", [])
    wanted = [r for r in test if re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0] in TEST_REQUIREMENTS]
    return [*project["dependencies"], *wanted]


def _packages_stamp() -> dict[str, object]:
    return {"suite": SUITE, "variant": "minbase", "packages": sorted(PACKAGES)}


def _pip_stamp() -> dict[str, object]:
    return {"python": PYTHON, "requirements": pip_requirements()}


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stamp_ok() -> bool:
    return _read_json(ROOT / PACKAGES_STAMP) == _packages_stamp()


def _pip_ok() -> bool:
    return _read_json(ROOT / VENV.lstrip("/") / PIP_STAMP) == _pip_stamp()


# --------------------------------------------------------------------------- build


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def host_mirror() -> str:
    """The Debian archive that the host's apt uses (deb822 or one-line sources)."""
    if os.environ.get("IPAMGUARD_TRIXIE_MIRROR"):
        return os.environ["IPAMGUARD_TRIXIE_MIRROR"]
    sources = [Path("/etc/apt/sources.list")]
    with contextlib.suppress(OSError):
        sources += sorted(Path("/etc/apt/sources.list.d").iterdir())
    for path in sources:
        if path.suffix not in (".list", ".sources") or not path.is_file():
            continue
        for uri, suites in _apt_entries(path):
            if uri.rstrip("/").endswith("/debian") and any(
                "-" not in s and "/" not in s for s in suites
            ):
                return uri.rstrip("/")
    return FALLBACK_MIRROR


def _apt_entries(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of every 'deb' entry of a sources file."""
    text = path.read_text(errors="replace")
    if path.suffix == ".list":
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                yield words[1], [words[2]]
        return
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(("#", " ")):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()


def _build(log: bool) -> None:
    """debootstrap into a temporary directory, add the venv, rename it to ROOT."""
    for stale in CACHE_DIR.glob("trixie-build-*"):  # a killed build (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix="trixie-build-", dir=CACHE_DIR))
    try:
        new = tmp / "root"
        mirror = host_mirror()
        _say(log, f"debootstrap {SUITE} from {mirror} into {new} (about a minute or two)")
        argv = [
            "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
            SUITE, str(new), mirror,
        ]  # fmt: skip
        # its own mount namespace: the /proc and /sys it mounts in the target die with it
        _run(["unshare", "--mount", "--propagation", "private", *argv], tmp / "debootstrap.log")
        (new / "etc" / "hostname").write_text("ipamguard-trixie\n")
        _install_venv(new)
        (new / PACKAGES_STAMP).write_text(json.dumps(_packages_stamp()) + "\n")
        if ROOT.exists():
            os.rename(ROOT, tmp / "old")
        os.rename(new, ROOT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install_venv(root: Path) -> None:
    """python3 -m venv; pip install the requirements: the root's python3.13, in a chroot.

    Built as VENV.new and renamed into place, so that a sandbox of another session
    running from the old venv meanwhile loses it for a rename only. (A moved venv
    works when run as ``VENV/bin/python -m ...``, as the sandbox does; its scripts'
    shebangs name VENV.new.)
    """
    shutil.copy(CA_BUNDLE, root / CA_BUNDLE.lstrip("/"))
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    new, venv, old = (root / f"{VENV}{suffix}".lstrip("/") for suffix in (".new", "", ".old"))
    shutil.rmtree(new, ignore_errors=True)  # a killed install (we hold the lock)
    q = shlex.quote
    requirements = " ".join(q(r) for r in pip_requirements())
    inner = (
        f"python3 -m venv {VENV}.new && "
        f"{VENV}.new/bin/python -m pip install --quiet --no-input {requirements}"
    )
    script = (
        "set -e\n"
        f"mount --rbind /dev {q(str(root / 'dev'))}\n"
        f"mount -t proc proc {q(str(root / 'proc'))}\n"
        f"exec chroot {q(str(root))} sh -c {q(inner)}\n"
    )
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PIP_CERT": CA_BUNDLE,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }
    for name in ("PIP_INDEX_URL", "PIP_DEFAULT_TIMEOUT", "http_proxy", "https_proxy", "no_proxy"):
        if os.environ.get(name) and not os.environ[name].startswith("file:"):
            env[name] = os.environ[name]
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], None, env=env)
    (new / PIP_STAMP).write_text(json.dumps(_pip_stamp()) + "\n")
    shutil.rmtree(old, ignore_errors=True)
    if venv.exists():
        os.rename(venv, old)
    os.rename(new, venv)
    shutil.rmtree(old, ignore_errors=True)


def _run(argv: Sequence[str], log: Path | None, env: dict[str, str] | None = None) -> None:
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "w")) if log else subprocess.PIPE
        proc = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, timeout=1800, check=False, text=True,
        )  # fmt: skip
    if proc.returncode != 0:
        text = log.read_text(errors="replace") if log else proc.stdout
        raise TrixieError(f"{shlex.join(argv)} failed (rc={proc.returncode}):\n{text[-4000:]}")


def _say(log: bool, message: str) -> None:
    if log:
        print(f"[trixie] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- CLI


def run_pytest(args: Sequence[str]) -> int:
    """pytest ARGS with the root's Python 3.13, in a podman 5.4 sandbox, on this checkout."""
    sys.path.insert(0, str(Path(__file__).parent))
    from sandbox import Sandbox

    with Sandbox(podman="5.4", image=False) as sb:
        version = sb.run(PYTHON, "--version").stdout.strip()
        print(f"[trixie] {version}: pytest {shlex.join(args)}", file=sys.stderr, flush=True)
        env = {"PYTHONPATH": str(REPO_ROOT)}
        if os.environ.get("CI"):
            env["CI"] = os.environ["CI"]  # what cannot run fails instead of skipping
        proc = sb.popen(
            PYTHON, "-m", "pytest", "-p", "no:cacheprovider", *args, cwd=str(REPO_ROOT), env=env
        )
        return proc.wait()


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["build"]:
        t0 = time.monotonic()
        ensure_root()
        print(f"[trixie] ready in {time.monotonic() - t0:.1f} s: {ROOT}", file=sys.stderr)
        return 0
    if argv[:1] == ["pytest"]:
        ensure_root()
        return run_pytest(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
