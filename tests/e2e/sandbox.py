"""A real rootful podman (and optionally journald) in private namespaces.

``Sandbox`` starts one long-lived process in new mount, network, pid and cgroup
namespaces and makes every default path that podman, netavark, runc and journald
use a private tmpfs (or a private copy) inside them, so that the real paths
(``/run/containers/networks/ipam.db``, ``/etc/containers/networks``,
``/run/podman/podman.sock``, ...) can be used unchanged and the host is never
touched: no bridges, firewall rules, processes, files or cgroups outlive it.

Layout inside the sandbox (everything else is the host's, e.g. ``/tmp``, ``/work``):

- ``/run``: a fresh tmpfs (covers /run/containers, /run/libpod, /run/podman,
  /run/lock, /run/netns, /run/runc, /run/systemd, /run/log/journal, /run/dbus).
- ``/var/lib``: an overlay of the host's /var/lib with a tmpfs upper layer (so that
  mount points can be created without touching the host), with tmpfs on
  ``/var/lib/containers`` (podman's overlay driver cannot sit on overlayfs) and on
  ``/var/lib/cni`` (CNI's host-local files, under ``network_backend = "cni"``).
- ``/etc/containers``: a bind-mounted copy of the host's with our containers.conf
  (CONTAINERS_CONF) and without networks/, containers.conf.d/ and storage.conf;
  ``/etc/cni``, ``/var/tmp``, ``/dev/shm`` (podman's SHM locks) and
  ``/var/log/journal`` (if present): tmpfs.
- ``/sys``: a sysfs of the sandbox's network namespace (its own /sys/class/net) with
  fresh cgroup mounts whose root is the sandbox's cgroup (cgroup namespace), so that
  podman's ``/libpod_parent/...`` cgroups land below the sandbox's cgroup on the host
  and are removed with it.

Two podman flavours, the same API: ``Sandbox(podman="4.3")`` (the default) runs the
host's podman 4.3 (Debian 12) as laid out above; ``Sandbox(podman="5.4")`` runs podman
5.4 (netavark 1.14, Python 3.13) from a Debian 13 root (trixie.py, built once under
tests/.cache/trixie). That flavour pivot_roots into an overlay of the root (a tmpfs
upper layer: the cached root is never written) with the same /sys and cgroups, its
own /proc, the host's /dev (with a private /dev/shm and a /dev/net/tun that users may
open), and tmpfs on /run, /var/tmp, /var/lib/containers, /etc/containers/networks and
/home; the host's /tmp and this checkout (REPO_ROOT, same path) are bind-mounted in.
ipamguard runs there with the root's Python 3.13 venv (trixie.PYTHON), from this
checkout (PYTHONPATH). ``enable_rootless()`` adds a user whose rootless podman 5.4
runs for real (run_as_user(), podman_user(), ipamguard_user()).

Pid 1 of the sandbox is a small reaper (orphaned conmon/podman processes must be
reaped, or podman sees zombie conmons as alive); killing it kills everything inside.
Commands enter with ``nsenter`` (run(), popen()); the host reaches files and sockets
inside through ``/proc/PID/root`` (host_path(), api_url for podman-py). Stop what
popen() started with signal(), never Popen.kill(): see signal().
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trixie

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / "tests" / ".cache"

IMAGE = "localhost/bb"
IPAM_DB = "/run/containers/networks/ipam.db"
NETWORK_CONFIG_DIR = "/etc/containers/networks"
PODMAN_SOCKET = "/run/podman/podman.sock"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
JOURNALD = "/lib/systemd/systemd-journald"
BUSYBOX = "/bin/busybox"
BUSYBOX_APPLETS = (
    "sh", "ash", "sleep", "cat", "ls", "echo", "true", "false", "env", "id", "ps",
    "ip", "hostname", "kill", "mkdir", "rm", "touch", "grep", "wc", "head", "tail",
)  # fmt: skip

CONTAINERS_CONF = """\
# written by tests/e2e/sandbox.py
[containers]
# this machine cannot raise rlimits: podman's defaults (1048576) fail
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
# crun cannot run on a cgroup v1/hybrid host
runtime = "runc"
# no systemd as PID 1: libpod_parent/... below the sandbox's cgroup namespace
cgroup_manager = "cgroupfs"
# no journald unless a test starts one: keep events in /run/libpod/events
events_logger = "file"

[network]
# the host's /etc/cni/net.d must not make podman pick CNI
network_backend = "netavark"
"""

# /run/systemd/journald.conf.d/sandbox.conf: keep the host's kernel log and ttys out
JOURNALD_CONF = """\
[Journal]
ReadKMsg=no
ForwardToKMsg=no
ForwardToWall=no
ForwardToConsole=no
ForwardToSyslog=no
"""

# podman="4.3": the host's podman (Debian 12); "5.4": the Debian 13 root's (trixie.py)
FLAVOURS = ("4.3", "5.4")
TRIXIE_FLAVOUR = "5.4"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# the user of enable_rootless() (5.4 flavour)
ROOTLESS_USER = "ipguser"
ROOTLESS_UID = 1000
ROOTLESS_SUBIDS = "100000:65536"

# Tools the sandbox needs on the host; see missing_requirements().
REQUIRED_TOOLS = ("podman", "runc", "unshare", "nsenter", "setpriv", "ip", "mount", "tar")

_counter = itertools.count()


class SandboxError(AssertionError):
    """A command in the sandbox failed, or the sandbox could not start or stop."""


def require_sandbox(podman: str = "4.3") -> None:
    """Skip (locally) or fail (with $CI set) when a sandbox cannot run here."""
    import pytest

    reason = missing_requirements(podman)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"e2e tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def missing_requirements(podman: str = "4.3") -> str | None:
    """Why a sandbox of that flavour cannot run on this machine, or None if it can."""
    if sys.platform != "linux":
        return "the e2e sandbox needs Linux"
    if os.geteuid() != 0:
        return "the e2e sandbox needs root (rootful podman, namespaces)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools for the e2e sandbox: {', '.join(missing)}"
    for path in ("/etc/containers", "/var/lib", "/var/tmp", "/dev/shm"):
        if not os.path.isdir(path):
            return f"{path} is missing (the sandbox covers it, never creates it on the host)"
    if not _is_static_elf(Path(BUSYBOX)):
        return f"{BUSYBOX} is missing or not statically linked (apt-get install busybox-static)"
    if podman == TRIXIE_FLAVOUR:
        return trixie.missing_requirements()
    return None


def _is_static_elf(path: Path) -> bool:
    """True if path is an ELF executable without a program interpreter (PT_INTERP)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # 64-bit little endian only
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def busybox_image_tar() -> Path:
    """tests/.cache/bb.tar: a root filesystem with busybox and its applets (built once)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    tar = CACHE_DIR / "bb.tar"
    busybox = Path(BUSYBOX)
    if tar.exists() and tar.stat().st_mtime >= busybox.stat().st_mtime:
        return tar
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
        rootfs = Path(tmp) / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        for name in ("etc", "tmp", "proc", "sys", "dev"):
            (rootfs / name).mkdir()
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (rootfs / "etc" / "group").write_text("root:x:0:\n")
        partial = Path(tmp) / "bb.tar"
        subprocess.run(
            ["tar", "--owner=0", "--group=0", "-C", str(rootfs), "-cf", str(partial), "."],
            check=True,
        )
        os.replace(partial, tar)  # atomic: parallel sessions may build it too
    return tar


# --------------------------------------------------------------------------- cgroups


@dataclass(frozen=True)
class _Hierarchy:
    mountpoint: str  # on the host, e.g. /sys/fs/cgroup/memory
    fstype: str  # cgroup or cgroup2
    options: str  # mount options for a fresh mount inside the sandbox
    sandbox_dir: Path  # the sandbox's cgroup on the host

    @property
    def procs(self) -> Path:
        """cgroup.procs of the leaf that all sandbox processes live in."""
        return self.sandbox_dir / "init" / "cgroup.procs"


def _mountinfo() -> list[tuple[str, str, str, str, str]]:
    """(root, mountpoint, fstype, source, super options) of every mount, in mount order."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, source, superopts = post.split(" ", 2)
        unescape = _unescape_mountinfo
        out.append((unescape(fields[3]), unescape(fields[4]), fstype, source, superopts))
    return out


def _unescape_mountinfo(s: str) -> str:
    return s.encode().decode("unicode_escape") if "\\" in s else s


def _own_cgroups() -> tuple[dict[frozenset[str], str], str | None]:
    """The cgroup of this process: v1 by controller set, and the v2 path (or None)."""
    v1: dict[frozenset[str], str] = {}
    v2 = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if hid == "0" and controllers == "":
            v2 = path
        else:
            v1[frozenset(controllers.split(","))] = path
    return v1, v2


def _cgroup_hierarchies(name: str) -> list[_Hierarchy]:
    """Where to put the sandbox's cgroup in each mounted hierarchy.

    v1: below this process's own cgroup (memory limits of the caller keep applying).
    v2: at the root of the hierarchy, where controllers can be delegated (a cgroup
    with processes cannot enable controllers for its children).
    """
    own_v1, own_v2 = _own_cgroups()
    out = []
    for root, mountpoint, fstype, _source, superopts in _mountinfo():
        if fstype not in ("cgroup", "cgroup2") or not mountpoint.startswith("/sys/"):
            continue
        opts = [
            o
            for o in superopts.split(",")
            if o not in ("rw", "ro", "nsdelegate") and not o.startswith("release_agent=")
        ]
        if fstype == "cgroup":
            keys = set(opts)
            own = next((p for c, p in own_v1.items() if c <= keys), None)
            if own is None:
                continue
        else:
            own = "/"
        if not (own + "/").startswith(root.rstrip("/") + "/"):
            continue  # our cgroup is not visible in this mount
        parent = Path(mountpoint) / os.path.relpath(own, root)
        out.append(_Hierarchy(mountpoint, fstype, ",".join(opts), parent / name))
    if own_v2 is None and not out:
        raise SandboxError("no cgroup hierarchy found under /sys")
    return out


def _make_cgroup(h: _Hierarchy) -> None:
    for d in (h.sandbox_dir, h.sandbox_dir / "init"):
        d.mkdir()
        if h.fstype != "cgroup":
            continue
        for knob in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: empty until copied
            mine = d / knob
            if mine.exists() and not mine.read_text().strip():
                mine.write_text((d.parent / knob).read_text())


def _remove_cgroup_tree(top: Path, timeout: float = 5.0) -> list[str]:
    """rmdir top and everything below it, deepest first; returns what could not go."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        if top.exists():
            dirs = sorted(
                (Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True
            )
            for d in dirs:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    left.append(f"{d}: {e.strerror}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)  # killed processes may still be leaving the cgroup


def _cleanup_stale_cgroups(hierarchies: Sequence[_Hierarchy]) -> None:
    """Remove empty cgroups of sandboxes whose creating process is gone (a killed run)."""
    for h in hierarchies:
        with contextlib.suppress(OSError):
            for d in h.sandbox_dir.parent.glob("ipamguard-e2e-*"):
                pid = d.name.split("-")[2]
                if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                    _remove_cgroup_tree(d, timeout=0)


# --------------------------------------------------------------------------- sandbox


def _setup_script(hierarchies: Sequence[_Hierarchy], root: Path | None = None) -> str:
    """The shell script that pid 1 of the sandbox runs before becoming the reaper.

    root: the Debian 13 root to pivot into (5.4 flavour); None: the host's files.
    """
    q = shlex.quote
    lines = [
        "set -eu",
        # first: /run (mount(8) may write /run/mount/utab; nothing may reach the host's)
        "mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run",
        "ip link set lo up",
        # /sys of this netns, cgroups of this cgroupns
        "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
    ]
    cgroup_mounts = {h.mountpoint: h for h in hierarchies}
    for _root, mountpoint, fstype, source, superopts in _mountinfo():
        if not mountpoint.startswith("/sys/"):
            continue
        if mountpoint in cgroup_mounts:
            h = cgroup_mounts[mountpoint]
            opts = f"-o {q(h.options)}" if h.options else ""
            lines += [
                f"mkdir -p {q(mountpoint)}",
                f"mount -t {h.fstype} {opts} cgroup {q(mountpoint)}",
                f"echo 1 > {q(mountpoint)}/init/cgroup.procs",
            ]
        elif fstype == "tmpfs" and mountpoint == "/sys/fs/cgroup":
            lines.append(f"mount -t tmpfs -o {q(superopts)} tmpfs /sys/fs/cgroup")
        elif fstype not in ("cgroup", "cgroup2", "sysfs"):
            # securityfs, bpf, tracefs, ...: best effort
            lines.append(f"mount -t {q(fstype)} {q(source)} {q(mountpoint)} 2>/dev/null || true")
    lines += _trixie_lines(root) if root else _host_lines()
    lines.append('exec "$SANDBOX_PYTHON" -c "$SANDBOX_REAPER"')
    return "\n".join(lines) + "\n"


def _host_lines() -> list[str]:
    """Setup on the host's files (4.3 flavour): private /run, /var/lib, /etc/containers."""
    return [
        # /run (mounted above): podman, netavark, runc, journald keep their state there
        "mkdir -m 1777 /run/lock",
        # podman's SHM lock manager keeps /dev/shm/libpod_lock: never share it
        "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm",
        "mkdir -p /run/user /run/.sandbox/varlib-upper /run/.sandbox/varlib-work",
        # /etc/containers: a private copy with our containers.conf
        "mkdir /run/.sandbox/etc-containers",
        "cp -a /etc/containers/. /run/.sandbox/etc-containers/",
        # ...without the host's networks, drop-ins and storage.conf (it may point
        # graphroot anywhere on the host)
        "cd /run/.sandbox/etc-containers",
        "rm -rf networks containers.conf.d storage.conf",
        'printf %s "$SANDBOX_CONTAINERS_CONF" > containers.conf',
        "cd /",
        "mount --bind /run/.sandbox/etc-containers /etc/containers",
        # /var/lib: writable overlay (mount points without touching the host)
        "mount -t overlay overlay -o lowerdir=/var/lib,upperdir=/run/.sandbox/varlib-upper,"
        "workdir=/run/.sandbox/varlib-work /var/lib",
        "mkdir -p /var/lib/containers /var/lib/cni",
        "mount -t tmpfs -o mode=700 tmpfs /var/lib/containers",
        # CNI's host-local files (network_backend = "cni"): none of the host's
        "mount -t tmpfs -o mode=755 tmpfs /var/lib/cni",
        "mount -t tmpfs -o mode=1777 tmpfs /var/tmp",
        "if [ -d /etc/cni ]; then mount -t tmpfs tmpfs /etc/cni; mkdir /etc/cni/net.d; fi",
        "if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi",
        "for d in /root/.config/containers /root/.local/share/containers; do"
        ' if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi; done',
    ]


def _trixie_lines(root: Path) -> list[str]:
    """Setup of the 5.4 flavour: pivot_root into an overlay of the Debian 13 root.

    pivot_root, not chroot: the kernel refuses user namespaces (rootless podman) to a
    chrooted process. The new root is a mount of its own (containers/storage remounts /).
    """
    q = shlex.quote
    new = "/run/.sandbox/root"
    repo = q(new + str(REPO_ROOT))
    return [
        f"mkdir -p {new} /run/.sandbox/root-upper /run/.sandbox/root-work",
        f"mount -t overlay overlay -o lowerdir={q(str(root))},upperdir=/run/.sandbox/root-upper,"
        f"workdir=/run/.sandbox/root-work {new}",
        f"cd {new}",
        # this pid namespace's /proc; /sys with this netns and cgroupns (mounted above)
        "mount -t proc -o nosuid,nodev,noexec proc proc",
        "mount --rbind /sys sys",
        # the host's devices, but podman's SHM locks stay private
        "mount --rbind /dev dev",
        "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs dev/shm",
        # rootless pasta opens /dev/net/tun in its user namespace: a node of our own,
        # mode 666 (the host's may be 600), never a chmod of the host's; on a tmpfs
        # without nodev (a bind mount keeps the flags of the file system it comes from)
        "if [ -c /dev/net/tun ]; then mkdir /run/.sandbox/dev;"
        " mount -t tmpfs -o mode=755,nosuid tmpfs /run/.sandbox/dev;"
        " mknod -m 666 /run/.sandbox/dev/tun c 10 200;"
        " mount --bind /run/.sandbox/dev/tun dev/net/tun; fi",
        # podman, netavark, runc, journald keep their state in /run
        "mount -t tmpfs -o mode=755,nosuid,nodev tmpfs run",
        "mkdir -m 1777 run/lock",
        "mkdir -p run/user run/.sandbox var/lib/containers etc/containers/networks",
        "mount -t tmpfs -o mode=700 tmpfs var/lib/containers",
        "mount -t tmpfs -o mode=755 tmpfs etc/containers/networks",
        "rm -rf etc/containers/containers.conf.d",
        'printf %s "$SANDBOX_CONTAINERS_CONF" > etc/containers/containers.conf',
        "mount -t tmpfs -o mode=1777 tmpfs var/tmp",
        "mount -t tmpfs -o mode=755 tmpfs home",
        # shared with the test process, as in the 4.3 flavour: /tmp and this checkout
        "mount --rbind /tmp tmp",
        f"mkdir -p {repo}",
        f"mount --bind {q(str(REPO_ROOT))} {repo}",
        "mkdir .oldroot",
        "pivot_root . .oldroot",
        "cd /",
        "umount -l /.oldroot",
        "rmdir /.oldroot",
    ]


# Pid 1 of the sandbox: reap every orphan (conmon, podman service, ...), forever.
_REAPER = """\
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
sys.stdout.write("ready\\n")
sys.stdout.flush()
while True:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    signal.sigwait({signal.SIGCHLD})
"""


@dataclass(frozen=True)
class StorageRoot:
    """A second libpod instance: ``podman --root ROOT --runroot RUNROOT``."""

    name: str
    root: str
    runroot: str

    @property
    def args(self) -> tuple[str, ...]:
        return ("--root", self.root, "--runroot", self.runroot)


@dataclass(frozen=True)
class RootlessUser:
    """The unprivileged user of enable_rootless(): its podman is rootless podman 5.4."""

    name: str
    uid: int

    @property
    def home(self) -> str:
        return f"/home/{self.name}"

    @property
    def runtime_dir(self) -> str:
        """$XDG_RUNTIME_DIR: rootless podman's runroot and ipam.db live below it."""
        return f"/run/user/{self.uid}"

    @property
    def ipam_db(self) -> str:
        return f"{self.runtime_dir}/containers/networks/ipam.db"

    @property
    def network_config_dir(self) -> str:
        return f"{self.home}/.local/share/containers/storage/networks"

    @property
    def podman_socket(self) -> str:
        return f"{self.runtime_dir}/podman/podman.sock"

    def env(self, python_bin: str) -> dict[str, str]:
        return {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "XDG_RUNTIME_DIR": self.runtime_dir,
            "PATH": f"{python_bin}:{SYSTEM_PATH}",
        }


@dataclass
class _Daemon:
    proc: subprocess.Popen[bytes]
    log: str  # path inside the sandbox


class Sandbox:
    """A private rootful podman; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        *,
        podman: str = "4.3",
        image: bool = True,
        containers_conf: str = CONTAINERS_CONF,
        start_timeout: float = 30.0,
    ) -> None:
        """podman: the flavour, "4.3" (the host's) or "5.4" (the Debian 13 root's);
        image: import localhost/bb; containers_conf: /etc/containers/containers.conf."""
        if podman not in FLAVOURS:
            raise ValueError(f"podman={podman!r}: one of {', '.join(FLAVOURS)}")
        self.flavour = podman
        # the Python that runs ipamguard inside (same version as the flavour's Debian)
        self.python = trixie.PYTHON if podman == TRIXIE_FLAVOUR else sys.executable
        self._root: Path | None = None  # the Debian 13 root on the host (5.4 flavour)
        self._podman_version: tuple[int, ...] | None = None
        self._rootless: RootlessUser | None = None
        self.image = image
        self.containers_conf = containers_conf
        self.start_timeout = start_timeout
        self.name = f"ipamguard-e2e-{os.getpid()}-{next(_counter)}-{int(time.time())}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._hierarchies: list[_Hierarchy] = []
        self._daemons: dict[str, _Daemon] = {}
        self._roots: dict[str, StorageRoot] = {}
        self._popened: list[subprocess.Popen[Any]] = []
        self.timings: dict[str, float] = {}

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        """Host pid of the sandbox's pid 1."""
        if self._pid is None:
            raise SandboxError("sandbox is not running")
        return self._pid

    def start(self) -> None:
        t0 = time.monotonic()
        reason = missing_requirements(self.flavour)
        if reason:
            raise SandboxError(reason)
        if self.flavour == TRIXIE_FLAVOUR:
            self._root = trixie.ensure_root()  # built once (minutes), then a stamp check
            self.timings["root"] = time.monotonic() - t0
        self._hierarchies = _cgroup_hierarchies(self.name)
        _cleanup_stale_cgroups(self._hierarchies)
        try:
            for h in self._hierarchies:
                _make_cgroup(h)
            self._spawn()
            self.timings["namespaces"] = time.monotonic() - t0
            if self.image:
                self.podman("import", "--quiet", str(busybox_image_tar()), IMAGE)
        except BaseException:
            self.close()
            raise
        self.timings["start"] = time.monotonic() - t0

    def _spawn(self) -> None:
        join = [str(h.sandbox_dir / "cgroup.procs") for h in self._hierarchies]
        env = {
            "PATH": SYSTEM_PATH,
            "SANDBOX_CONTAINERS_CONF": self.containers_conf,
            # pid 1 runs after the pivot_root in the 5.4 flavour: the root's python3
            "SANDBOX_PYTHON": "/usr/bin/python3" if self._root else sys.executable,
            "SANDBOX_REAPER": _REAPER,
        }
        argv = [
            *_join_cgroups_prefix(join),
            # the sandbox dies with this process's thread, and with unshare
            "setpriv", "--pdeathsig", "KILL",
            "unshare", "--mount", "--net", "--pid", "--cgroup", "--fork", "--kill-child=KILL",
            "--mount-proc", "--propagation", "private",
            "sh", "-c", _setup_script(self._hierarchies, self._root),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd="/",
        )
        assert self._proc.stdout is not None
        line = _readline(self._proc.stdout, self.start_timeout)
        if line != b"ready\n":
            self._proc.kill()
            _, err = self._proc.communicate()
            raise SandboxError(
                f"sandbox did not start (rc={self._proc.returncode}, stdout={line!r}):\n"
                f"{err.decode(errors='replace')}"
            )
        children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children").read_text()
        self._pid = int(children.split()[0])
        # unshare too: on cgroup v2 the sandbox's root cgroup must hold no process,
        # or podman/runc cannot enable controllers for /libpod_parent below it
        for h in self._hierarchies:
            h.procs.write_text(str(self._proc.pid))

    def close(self) -> None:
        """Kill everything in the sandbox and remove its cgroups; raise on leftovers."""
        t0 = time.monotonic()
        problems = []
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)  # pid 1 of the pid namespace: all die
        self._daemons.clear()
        for proc in self._popened:  # daemons too: nsenter exits once its child died
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append(f"{proc.args!r}: still running")
        self._popened.clear()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream is not None:
                    stream.close()
        for h in self._hierarchies:
            problems += _remove_cgroup_tree(h.sandbox_dir)
        self._pid = None
        self._proc = None
        self._hierarchies = []
        self.timings["close"] = time.monotonic() - t0
        if problems:
            raise SandboxError("sandbox left cgroups behind:\n" + "\n".join(problems))

    # ----------------------------------------------------------------- commands

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        """The host's view of a path inside the sandbox (via /proc/PID/root)."""
        return Path(f"/proc/{self.pid}/root") / os.fspath(path).lstrip("/")

    def _command(self, argv: Sequence[str], cwd: str) -> list[str]:
        if not argv:
            raise ValueError("empty command")
        return [
            *_join_cgroups_prefix([str(h.procs) for h in self._hierarchies]),
            "nsenter", f"--target={self.pid}", "--mount", "--net", "--pid", "--cgroup",
            f"--wdns={cwd}", "--", *map(os.fspath, argv),
        ]  # fmt: skip

    def _env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": f"{Path(self.python).parent}:{SYSTEM_PATH}",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TMPDIR": "/var/tmp",
        }
        if self.flavour == TRIXIE_FLAVOUR:
            env["PODMAN_IGNORE_CGROUPSV1_WARNING"] = "1"  # podman 5 on this cgroup v1 host
        if extra:
            env.update(extra)
        return env

    def run(
        self,
        *argv: str | os.PathLike[str],
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the sandbox (as root, in all its namespaces).

        Text mode, output captured. With check (default) a non-zero exit raises a
        SandboxError (an AssertionError) showing argv, rc, stdout and stderr. On
        timeout the command and everything in its process group is killed.
        """
        args = [os.fspath(a) for a in argv]
        proc = subprocess.Popen(
            self._command(args, cwd),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._env(env),
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(proc, signal.SIGKILL)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # e.g. a grandchild keeps the pipes open
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
            raise SandboxError(
                f"timed out after {timeout}s: {shlex.join(args)}\n"
                f"--- stdout\n{out}--- stderr\n{err}"
            ) from None
        result = subprocess.CompletedProcess(args, proc.returncode, out, err)
        if check and result.returncode != 0:
            raise SandboxError(
                f"command failed in sandbox: {shlex.join(args)}\nrc={result.returncode}\n"
                f"--- stdout\n{out}--- stderr\n{err}"
            )
        return result

    def popen(
        self,
        *argv: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        **kw: Any,
    ) -> subprocess.Popen[Any]:
        """Start a command inside the sandbox in the background (own process group).

        Stop it with ``sandbox.signal(proc, sig)``, not proc.kill(); it dies with the
        sandbox anyway.
        """
        proc = subprocess.Popen(
            self._command([os.fspath(a) for a in argv], cwd),
            env=self._env(env),
            start_new_session=True,
            **kw,
        )
        self._popened.append(proc)
        return proc

    def signal(self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
        """Send sig to what a run()/popen() started *inside* the sandbox.

        Never signal the Popen itself (nsenter, in the host's pid namespace): it
        dies at once and its child is then reparented to the host's init, not to
        the sandbox's. Signalled this way, nsenter exits with (and reaps) its child.
        """
        deadline = time.monotonic() + 2.0
        while proc.poll() is None:
            inside = [pid for pid in _group_members(proc.pid) if pid != proc.pid]
            if inside:
                for pid in inside:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
                return
            if time.monotonic() > deadline:  # nsenter never forked: nothing inside
                proc.send_signal(sig)
                return
            time.sleep(0.01)

    def podman(
        self, *args: str, root: StorageRoot | None = None, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """``podman ARGS`` in the sandbox (``root``: a second storage root)."""
        return self.run("podman", *(root.args if root else ()), *args, **kw)

    def ipamguard(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``python3 -m ipamguard ARGS`` in the sandbox, from this checkout.

        The flavour's Python (self.python): 4.3, sys.executable of the test process
        (the same venv); 5.4, the Debian 13 root's Python 3.13 venv.
        """
        env = {"PYTHONPATH": str(REPO_ROOT), **kw.pop("env", {})}
        return self.run(self.python, "-m", "ipamguard", *args, env=env, **kw)

    def ipamguard_popen(self, *args: str, **kw: Any) -> subprocess.Popen[Any]:
        """``python3 -m ipamguard ARGS`` in the background (e.g. the daemon)."""
        env = {"PYTHONPATH": str(REPO_ROOT), **kw.pop("env", {})}
        return self.popen(self.python, "-m", "ipamguard", *args, env=env, **kw)

    @property
    def podman_version(self) -> tuple[int, ...]:
        """The sandbox's podman version, e.g. (4, 3, 1), from ``podman version``."""
        if self._podman_version is None:
            doc = json.loads(self.podman("version", "--format", "json").stdout)
            numbers = doc["Client"]["Version"].split("-")[0].split("+")[0].split(".")
            self._podman_version = tuple(int(n) for n in numbers if n.isdigit())
        return self._podman_version

    # ----------------------------------------------------------------- rootless (5.4)

    @property
    def rootless(self) -> RootlessUser:
        """The user of enable_rootless() (a SandboxError before it)."""
        if self._rootless is None:
            raise SandboxError("no rootless user: call enable_rootless() first")
        return self._rootless

    def enable_rootless(self, *, image: bool = True) -> RootlessUser:
        """A user (ROOTLESS_USER, uid ROOTLESS_UID) whose podman runs rootless, for real.

        /etc/passwd, /etc/group, /etc/subuid and /etc/subgid entries, a home on the
        sandbox's /home tmpfs, XDG_RUNTIME_DIR=/run/user/UID (0700, the user's), and
        ``mount --make-rshared /`` (rootless podman wants shared propagation; the
        sandbox's mounts are private to its namespace). image: import localhost/bb for
        the user. 5.4 flavour only: the host's podman 4.3 is not set up for it here.
        """
        if self._rootless is not None:
            return self._rootless
        if self.flavour != TRIXIE_FLAVOUR:
            raise SandboxError(f"rootless podman needs the {TRIXIE_FLAVOUR} flavour")
        user = RootlessUser(ROOTLESS_USER, ROOTLESS_UID)
        name, uid = user.name, user.uid
        self.run("sh", "-euc", f"""
            echo '{name}:x:{uid}:{uid}:ipamguard tests:{user.home}:/bin/sh' >>/etc/passwd
            echo '{name}:x:{uid}:' >>/etc/group
            echo '{name}:{ROOTLESS_SUBIDS}' >>/etc/subuid
            echo '{name}:{ROOTLESS_SUBIDS}' >>/etc/subgid
            install -d -m 700 -o {uid} -g {uid} {user.home} {user.runtime_dir}
            mount --make-rshared /
        """)  # fmt: skip
        self._rootless = user
        if image:
            self.podman_user("import", "--quiet", str(busybox_image_tar()), IMAGE)
        return user

    def _as_user(
        self, argv: Sequence[str | os.PathLike[str]], env: Mapping[str, str] | None
    ) -> tuple[list[str], dict[str, str]]:
        """argv and env of argv run as the rootless user (setpriv drops root)."""
        user = self.rootless
        command = [
            "setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups", "--",
            *(os.fspath(a) for a in argv),
        ]  # fmt: skip
        return command, {**user.env(str(Path(self.python).parent)), **(env or {})}

    def run_as_user(
        self, *argv: str | os.PathLike[str], env: Mapping[str, str] | None = None, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """run() as the rootless user (setpriv; HOME, XDG_RUNTIME_DIR, PATH of the user)."""
        command, user_env = self._as_user(argv, env)
        return self.run(*command, env=user_env, **kw)

    def popen_as_user(
        self, *argv: str | os.PathLike[str], env: Mapping[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[Any]:
        """popen() as the rootless user."""
        command, user_env = self._as_user(argv, env)
        return self.popen(*command, env=user_env, **kw)

    def podman_user(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``podman ARGS`` as the rootless user: rootless podman 5.4."""
        return self.run_as_user("podman", *args, **kw)

    def ipamguard_user(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """``python3 -m ipamguard ARGS`` as the rootless user, from this checkout."""
        env = {"PYTHONPATH": str(REPO_ROOT), **kw.pop("env", {})}
        return self.run_as_user(self.python, "-m", "ipamguard", *args, env=env, **kw)

    def read_file(self, path: str) -> bytes:
        return self.host_path(path).read_bytes()

    def write_file(self, path: str, data: bytes) -> None:
        """Overwrite in place (same inode, like ``cp`` onto an existing file)."""
        with open(self.host_path(path), "r+b" if self.host_path(path).exists() else "wb") as f:
            f.write(data)
            f.truncate()

    # ----------------------------------------------------------------- podman helpers

    def network_create(self, name: str, subnet: str, *args: str) -> None:
        self.podman("network", "create", "--subnet", subnet, *args, name)

    def container_id(self, name: str, root: StorageRoot | None = None) -> str:
        return self.podman("inspect", "--format", "{{.Id}}", name, root=root).stdout.strip()

    def stage_leak(
        self,
        name: str,
        network: str,
        ip: str,
        *,
        root: StorageRoot | None = None,
        user: bool = False,
    ) -> str:
        """The seed incident: ``ip`` on ``network`` stays allocated to a removed container.

        ``podman run -d --name NAME --network NET --ip IP``, copy ipam.db aside,
        ``podman rm -f -t0 NAME``, wait until its conmon and exit command are gone,
        copy it back. Returns the (gone) container's ID.
        user: as the rootless user (enable_rootless()), in its own ipam.db.
        """
        return self._stage(name, ["--network", network, "--ip", ip], root, user)

    def stage_leak_multi(
        self, name: str, ips: Mapping[str, str], *, root: StorageRoot | None = None
    ) -> str:
        """Like stage_leak with one static IP on each of several networks {net: ip}.

        podman 4.3 syntax: ``--network NET1:ip=IP1 --network NET2:ip=IP2``
        (``--ip`` is refused with more than one network).
        """
        net_args = []
        for network, ip in ips.items():
            net_args += ["--network", f"{network}:ip={ip}"]
        return self._stage(name, net_args, root)

    def _stage(
        self, name: str, net_args: Sequence[str], root: StorageRoot | None, user: bool = False
    ) -> str:
        def podman(*args: str) -> subprocess.CompletedProcess[str]:
            return self.podman_user(*args) if user else self.podman(*args, root=root)

        db = self.rootless.ipam_db if user else IPAM_DB
        cid = podman("run", "-d", "--name", name, *net_args, IMAGE, "sleep", "1000").stdout.strip()
        saved = self.read_file(db)
        podman("rm", "-f", "-t0", name)
        self.wait_processes_gone(cid)
        self.write_file(db, saved)
        return cid

    def wait_processes_gone(self, text: str, timeout: float = 10.0) -> None:
        """Wait until no process inside has text (e.g. a container ID) in its command line.

        ``podman rm -f`` may return while the container's conmon (``-c ID``) and its exit
        command (``podman ... container cleanup ID``) are still exiting (seen on both
        podmans, more often on 5.4 on a loaded machine); until they are gone, ipamguard
        rightly counts the container as alive.
        """
        deadline = time.monotonic() + timeout
        while left := [p for p in self.processes() if text in p]:
            if time.monotonic() > deadline:
                raise SandboxError(f"still running after {timeout}s: {left}")
            time.sleep(0.02)

    def second_root(self, name: str) -> StorageRoot:
        """A second libpod instance (own --root/--runroot, shared ipam.db), with the image."""
        if name in self._roots:
            return self._roots[name]
        sr = StorageRoot(
            name, f"/var/lib/containers/{name}/storage", f"/run/containers/{name}/storage"
        )
        archive = "/var/tmp/bb-image.tar"
        if not self.host_path(archive).exists():
            self.podman("save", "--quiet", "-o", archive, IMAGE)
        self.podman("load", "--quiet", "-i", archive, root=sr)
        self._roots[name] = sr
        return sr

    # ----------------------------------------------------------------- podman API

    @property
    def api_socket(self) -> str:
        """The API socket as a host path (AF_UNIX path sockets work across netns)."""
        return str(self.host_path(PODMAN_SOCKET))

    @property
    def api_url(self) -> str:
        """base_url for podman-py from the test process, e.g. unix:///proc/N/root/run/..."""
        return "unix://" + self.api_socket

    def _api_socket(self, user: bool) -> str:
        """The API socket inside: rootful, or the rootless user's (enable_rootless())."""
        return self.rootless.podman_socket if user else PODMAN_SOCKET

    def start_podman_service(self, timeout: float = 20.0, *, user: bool = False) -> None:
        """``podman system service --time=0 unix:///run/podman/podman.sock``; wait for _ping.

        user: the rootless user's service, on $XDG_RUNTIME_DIR/podman/podman.sock.
        """
        name = "podman-user" if user else "podman"
        if name in self._daemons:
            return
        sock = self._api_socket(user)
        argv = ["podman", "system", "service", "--time=0", f"unix://{sock}"]
        if user:
            self.run_as_user("mkdir", "-p", os.path.dirname(sock))
            self._start_daemon(name, *self._as_user(argv, None))
        else:
            self.run("mkdir", "-p", os.path.dirname(sock))
            self._start_daemon(name, argv)
        self._wait("podman API _ping", timeout, lambda: self.api_ping(user=user), name)

    def api_ping(self, *, user: bool = False) -> bool:
        try:
            status, body = self.api_get("/v4.0.0/libpod/_ping", timeout=2, user=user)
        except OSError:
            return False
        return status == 200 and body == b"OK"

    def api_get(self, path: str, timeout: float = 10.0, *, user: bool = False) -> tuple[int, bytes]:
        conn = _UnixHTTPConnection(str(self.host_path(self._api_socket(user))), timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": "d"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def podman_client(self, **kw: Any) -> Any:
        """A podman-py ``PodmanClient`` on the sandbox's API socket (service must run)."""
        import podman

        return podman.PodmanClient(base_url=self.api_url, **kw)

    def podman_service_status(self) -> str:
        """One line on the rootful API service: running or not, its socket, its log's end."""
        daemon = self._daemons.get("podman")
        if daemon is None:
            state = "not started"
        elif daemon.proc.poll() is None:
            state = "running"
        else:
            state = f"exited (rc={daemon.proc.returncode})"
        sock = "present" if self.host_path(PODMAN_SOCKET).exists() else "gone"
        log = self.daemon_log("podman")[-2000:]
        return f"podman service {state}, socket {sock}; log: {log!r}"

    def restart_podman_service_if_gone(self) -> None:
        """Start the rootful API service again if it exited or its socket is gone."""
        daemon = self._daemons.get("podman")
        if daemon and daemon.proc.poll() is None and self.host_path(PODMAN_SOCKET).exists():
            return
        self.stop_podman_service()
        self.start_podman_service()

    def stop_podman_service(self, *, user: bool = False) -> None:
        self._stop_daemon("podman-user" if user else "podman")
        with contextlib.suppress(FileNotFoundError):
            self.host_path(self._api_socket(user)).unlink()

    # ----------------------------------------------------------------- journald

    def start_journald(self, timeout: float = 10.0) -> None:
        """Start systemd-journald in the sandbox; wait for /run/systemd/journal/socket."""
        if "journald" in self._daemons:
            return
        conf = self.host_path("/run/systemd/journald.conf.d")
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "sandbox.conf").write_text(JOURNALD_CONF)
        # its own messages go to its log, not to the host's kernel log (/dev/kmsg)
        self._start_daemon("journald", [JOURNALD], env={"SYSTEMD_LOG_TARGET": "console"})
        sock = self.host_path(JOURNAL_SOCKET)
        self._wait("journald socket", timeout, sock.exists, "journald")

    def stop_journald(self) -> None:
        self._stop_daemon("journald")

    def journal_send(self, message: str, **fields: str) -> None:
        """Send one entry in journald's native protocol (from the host, over the socket)."""
        payload = _journal_native({"MESSAGE": message, **fields})
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(payload, str(self.host_path(JOURNAL_SOCKET)))

    def journal_entries(self, *args: str, **match: str) -> list[dict[str, Any]]:
        """``journalctl -o json`` in the sandbox, FIELD=VALUE matches, after a --sync."""
        self.run("journalctl", "--sync")
        res = self.run(
            "journalctl", "-o", "json", "--no-pager", *args,
            *(f"{k}={v}" for k, v in match.items()),
            check=False,
        )  # fmt: skip
        if res.returncode != 0 and "No entries" not in res.stdout + res.stderr:
            raise SandboxError(f"journalctl failed: rc={res.returncode}\n{res.stderr}")
        return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]

    def wait_journal(self, timeout: float = 10.0, **match: str) -> list[dict[str, Any]]:
        """Poll journal_entries(**match) until it is not empty."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.journal_entries(**match)
            if entries or time.monotonic() > deadline:
                return entries
            time.sleep(0.1)

    # ----------------------------------------------------------------- daemons

    def _start_daemon(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        log = f"/run/.sandbox/{name}.log"
        proc = self.popen(
            "sh",
            "-c",
            'log=$1; shift; exec "$@" >"$log" 2>&1',
            "sh",
            log,
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._daemons[name] = _Daemon(proc, log)

    def _stop_daemon(self, name: str, timeout: float = 10.0) -> None:
        daemon = self._daemons.pop(name, None)
        if daemon is None:
            return
        self.signal(daemon.proc, signal.SIGTERM)
        try:
            daemon.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(daemon.proc, signal.SIGKILL)
            daemon.proc.wait()

    def daemon_log(self, name: str) -> str:
        daemon = self._daemons.get(name)
        path = daemon.log if daemon else f"/run/.sandbox/{name}.log"
        try:
            return self.host_path(path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait(self, what: str, timeout: float, ready: Any, daemon: str) -> None:
        deadline = time.monotonic() + timeout
        proc = self._daemons[daemon].proc
        while not ready():
            if proc.poll() is not None:
                raise SandboxError(
                    f"{what}: {daemon} exited (rc={proc.returncode}):\n{self.daemon_log(daemon)}"
                )
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{what}: not ready after {timeout}s:\n{self.daemon_log(daemon)}"
                )
            time.sleep(0.05)

    # ----------------------------------------------------------------- leftovers

    @property
    def cgroup_dirs(self) -> list[Path]:
        """The sandbox's cgroups on the host (one per hierarchy), removed by close()."""
        return [h.sandbox_dir for h in self._hierarchies]

    def host_pids(self) -> set[int]:
        """Host pids of every process in the sandbox's pid namespace (pid 1 included)."""
        ns = os.readlink(f"/proc/{self.pid}/ns/pid")
        return _pids_in_pidns(ns)

    def processes(self) -> list[str]:
        """``ps`` inside the sandbox: command lines of every process but pid 1."""
        out = []
        for entry in self.host_path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != "1":
                with contextlib.suppress(OSError):
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                    if not cmd:  # exiting or zombie
                        cmd = b"[" + (entry / "comm").read_bytes().strip() + b"]"
                    out.append(f"{entry.name} {cmd.decode(errors='replace')}")
        return out


def _group_members(pgid: int) -> list[int]:
    """Pids of the living (not zombie) processes of process group pgid."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()  # state ppid pgrp ...
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def _pids_in_pidns(ns: str) -> set[int]:
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    pids.add(int(entry))
    return pids


def _join_cgroups_prefix(procs_files: Sequence[str]) -> list[str]:
    """argv prefix: move this process into the given cgroups, then exec the rest."""
    return [
        "sh",
        "-c",
        'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1"; shift; n=$((n-1)); done; exec "$@"',
        "sh",
        str(len(procs_files)),
        *procs_files,
    ]


def _readline(stream: Any, timeout: float) -> bytes:
    """One line from a pipe, or what came before EOF/timeout."""
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(stream.fileno(), 1)
            if not chunk:
                break
            buf += chunk
    return buf


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except OSError:
            s.close()
            raise
        self.sock = s


def _journal_native(fields: Mapping[str, str]) -> bytes:
    """journald's native protocol: KEY=value lines, binary-safe form for multi-line values."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode()
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


def host_links() -> set[str]:
    """Names of the host's network links (to show nothing leaked out)."""
    return {p.name for p in Path("/sys/class/net").iterdir()}
