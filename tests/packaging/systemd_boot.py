"""A real systemd as PID 1 of private namespaces, on the host's files behind overlays.

``BootedSystemd`` starts ``/lib/systemd/systemd --system`` (basic.target) in new
mount, pid, network, cgroup, UTS and IPC namespaces, so that units really run:
install.sh can enable and start ipamguard.service, podman.socket answers, and the
unit's sandbox (ProtectSystem=strict, an empty capability set, seccomp,
RestrictAddressFamilies=, ...) is applied by systemd itself. The host is never
touched:

- /etc, /usr, /opt, /var and /root are overlays whose upper layers live on a tmpfs
  (what install.sh writes there disappears with the namespaces); /run, /tmp,
  /dev/shm, /var/tmp and /var/lib/containers (podman's storage cannot sit on an
  overlay) are fresh tmpfs; /sys is a sysfs of the private network namespace.
- cgroups: one below this process's cgroup in every hierarchy, mounted as the
  root of the namespace's cgroup mounts; removed at close().
- /etc/containers gets the e2e sandbox's containers.conf (runc, cgroupfs, ...)
  and loses the host's networks/; journald is kept off the host's kernel log.

Commands enter with nsenter (run()). close() kills PID 1: everything dies with it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from sandbox import CONTAINERS_CONF, JOURNALD_CONF  # noqa: E402  (tests/e2e/sandbox.py)

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = "/lib/systemd/systemd"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OVERLAID = ("/etc", "/usr", "/opt", "/var", "/root")
REQUIRED_TOOLS = ("unshare", "nsenter", "mount", SYSTEMD)


MASKED = (
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-pstore.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-random-seed.service",
    "systemd-hwdb-update.service",
    "systemd-timesyncd.service",
)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


class BootError(AssertionError):
    """systemd did not come up, or a command inside failed."""


def missing_requirements() -> str | None:
    """Why systemd cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "booting systemd in namespaces needs root"
    if REPO.is_relative_to("/run"):
        return f"the clone ({REPO}) must not lie below /run, which gets a fresh tmpfs"
    for tool in REQUIRED_TOOLS:
        if not (Path(tool).exists() if tool.startswith("/") else _which(tool)):
            return f"{tool} is missing"
    return None


def _private_dev() -> list[str]:
    """Shell lines: a tmpfs /dev with the host's harmless devices bound in, own ptys."""
    lines = [
        "mkdir -p /run/.boot/hostdev",
        "mount --rbind /dev /run/.boot/hostdev",
        "mount -t tmpfs -o mode=755,nosuid tmpfs /dev",
    ]
    for name in DEVICES:
        lines += [f"touch /dev/{name}", f"mount --bind /run/.boot/hostdev/{name} /dev/{name}"]
    lines += [
        "umount -l /run/.boot/hostdev",
        "mkdir /dev/pts /dev/shm /dev/mqueue",
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts /dev/pts",
        "ln -s pts/ptmx /dev/ptmx",
        "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm",
        "mount -t mqueue mqueue /dev/mqueue",
        "ln -s /proc/self/fd /dev/fd",
        "ln -s /proc/self/fd/0 /dev/stdin",
        "ln -s /proc/self/fd/1 /dev/stdout",
        "ln -s /proc/self/fd/2 /dev/stderr",
    ]
    return lines


def _which(tool: str) -> bool:
    return any(Path(d, tool).exists() for d in PATH.split(":"))


def _cgroup_mounts() -> list[tuple[str, str, str, str]]:
    """(root, mountpoint, fstype, super options) of the cgroup mounts under /sys."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, _source, superopts = post.split(" ", 2)
        if fstype in ("cgroup", "cgroup2") and fields[4].startswith("/sys/fs/cgroup"):
            out.append((fields[3], fields[4], fstype, superopts))
    return out


def _own_cgroup(fstype: str, options: set[str]) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if fstype == "cgroup2" and hid == "0":
            return path
        if fstype == "cgroup" and controllers and set(controllers.split(",")) <= options:
            return path
    return None


def _remove_tree(top: Path, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for d, _, _ in sorted(os.walk(top), key=lambda w: -len(Path(w[0]).parts)):
            try:
                Path(d).rmdir()
            except FileNotFoundError:
                pass
            except OSError as error:
                left.append(f"{d}: {error.strerror}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


class BootedSystemd:
    """See the module docstring. Use as a context manager."""

    def __init__(self, boot_timeout: float = 60.0, keep: Sequence[Path] = (REPO,)) -> None:
        """keep: host directories that must stay visible inside although they lie
        below a fresh tmpfs (/tmp, /var/tmp): the clone, wherever CI put it."""
        self.name = f"ipamguard-boot-{os.getpid()}-{time.monotonic_ns()}"
        self.boot_timeout = boot_timeout
        self.keep = [Path(p).resolve() for p in keep]
        self._cgroups: list[tuple[Path, str, str]] = []  # (dir on the host, mountpoint, mount)
        self._proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def __enter__(self) -> BootedSystemd:
        try:
            self._make_cgroups()
            self._spawn()
            self._wait_running()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ start

    def _make_cgroups(self) -> None:
        for root, mountpoint, fstype, superopts in _cgroup_mounts():
            options = {o for o in superopts.split(",") if o not in ("rw", "ro", "nsdelegate")}
            own = _own_cgroup(fstype, options)
            if own is None or not (own + "/").startswith(root.rstrip("/") + "/"):
                continue
            parent = Path(mountpoint) / os.path.relpath(own, root)
            mine = parent / self.name
            mine.mkdir()
            for knob in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: empty until copied
                if (mine / knob).exists() and not (mine / knob).read_text().strip():
                    (mine / knob).write_text((parent / knob).read_text())
            opts = ",".join(sorted(options - {"release_agent"}))
            mount = f"mount -t {fstype} -o {shlex.quote(opts)} cgroup {shlex.quote(mountpoint)}"
            self._cgroups.append((mine, mountpoint, mount))

    def _setup_script(self) -> str:
        q = shlex.quote
        lines = [
            "set -eu",
            "mount -t tmpfs -o mode=755 tmpfs /run",
            "mkdir -p /run/.boot",
            "mount -t tmpfs tmpfs /run/.boot",  # the overlays' upper layers
        ]
        for top in OVERLAID:
            up, work = f"/run/.boot{top}/upper", f"/run/.boot{top}/work"
            lines += [
                f"mkdir -p {up} {work}",
                f"mount -t overlay overlay -o lowerdir={top},upperdir={up},workdir={work} {top}",
            ]
        for i, path in enumerate(self.keep):  # set aside before /tmp is covered
            lines += [
                f"mkdir -p /run/.boot/keep/{i}",
                f"mount --rbind {q(str(path))} /run/.boot/keep/{i}",
            ]
        lines += [
            "mount -t tmpfs -o mode=1777 tmpfs /tmp",
            "mount -t tmpfs -o mode=1777 tmpfs /var/tmp",
            "mkdir -p /var/lib/containers && mount -t tmpfs -o mode=700 tmpfs /var/lib/containers",
            *_private_dev(),
            # the kernel's settings stay the host's: read-only but for this netns's net.*
            "mount --bind /proc/sys /proc/sys",
            "mount --bind /proc/sys/net /proc/sys/net",
            "mount -o remount,bind,ro /proc/sys",
            "[ ! -e /proc/sysrq-trigger ]"
            " || mount --bind -o ro /proc/sysrq-trigger /proc/sysrq-trigger",
            "mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys",
        ]
        if any(mp != "/sys/fs/cgroup" for _, mp, _ in self._cgroups):
            lines.append("mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup")
        for _, mountpoint, mount in self._cgroups:
            lines += [f"mkdir -p {q(mountpoint)}", mount]
        for i, path in enumerate(self.keep):
            lines += [
                f"mkdir -p {q(str(path))}",
                f"mount --rbind /run/.boot/keep/{i} {q(str(path))}",
            ]
        lines += [
            "mkdir -m 1777 -p /run/lock",
            "rm -rf /etc/containers/networks /etc/containers/containers.conf.d"
            " /etc/containers/storage.conf",
            f"printf %s {q(CONTAINERS_CONF)} > /etc/containers/containers.conf",
            "mkdir -p /etc/systemd/journald.conf.d",
            f"printf %s {q(JOURNALD_CONF)} > /etc/systemd/journald.conf.d/boot-test.conf",
            # units that would reach the host's kernel (sysctl, modules, binfmt, pstore,
            # udev events) never run here
            *(f"ln -sf /dev/null /etc/systemd/system/{unit}" for unit in MASKED),
            f"exec env -i container=ipamguard-test PATH={PATH} {SYSTEMD} --system"
            " --unit=basic.target --show-status=no --log-target=journal",
        ]
        return "\n".join(lines) + "\n"

    def _spawn(self) -> None:
        join = " ".join(
            f"echo $$ > {shlex.quote(str(d / 'cgroup.procs'))};" for d, _, _ in self._cgroups
        )
        argv = [
            "sh", "-c", f'{join} exec "$@"', "sh",
            "unshare", "--mount", "--pid", "--net", "--cgroup", "--uts", "--ipc", "--fork",
            "--kill-child=KILL", "--mount-proc", "--propagation", "private",
            "sh", "-c", self._setup_script(),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={"PATH": PATH},
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
            with contextlib.suppress(OSError):
                words = children.read_text().split()
                if words:
                    self.pid = int(words[0])
                    return
            if self._proc.poll() is not None:
                break
            time.sleep(0.02)
        raise BootError(f"the namespaces did not start: {self._stderr()}")

    def _wait_running(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        state = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BootError(f"systemd exited: {self._stderr()}")
            result = self.run("systemctl", "is-system-running", check=False, timeout=10)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise BootError(f"systemd did not finish booting (state {state!r})")

    def _stderr(self) -> str:
        if self._proc is None or self._proc.stderr is None or self._proc.poll() is None:
            return ""
        return self._proc.stderr.read().decode(errors="replace")

    # ------------------------------------------------------------------ use

    def run(
        self,
        *argv: str | os.PathLike[str],
        check: bool = True,
        timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside (every namespace, as root, the host's clone visible)."""
        full_env = {"PATH": PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", **(env or {})}
        command = ["nsenter", "-t", str(self.pid), "-a", *map(os.fspath, argv)]
        result = subprocess.run(
            command,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise BootError(
                f"{shlex.join(command[4:])}: exit {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def path(self, inside: str) -> Path:
        """The host's view of a path inside (through /proc/PID/root)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    # ------------------------------------------------------------------ stop

    def close(self) -> None:
        problems: list[str] = []
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # PID 1 of the namespace: all die
        if self._proc is not None:
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stderr is not None:
                self._proc.stderr.close()
        for directory, _, _ in self._cgroups:
            problems += _remove_tree(directory)
        self._cgroups = []
        self._proc = None
        self.pid = 0
        if problems:
            raise BootError("cgroups left behind:\n" + "\n".join(problems))
