"""A real systemd-networkd and a real D-Bus system bus in private namespaces.

``NetworkdSandbox`` starts one long-lived process in new mount, network and pid
namespaces (``unshare -m -n -p -f --kill-child --mount-proc``), makes there
- tmpfs over /run/systemd, /run/dbus, /run/netns and /etc/systemd/network,
- a fresh *read-only* sysfs over /sys (the cgroup mounts kept on top), so that
  /sys/class/net lists the sandbox's links; read-only also tells networkd that
  no udev will come (``udev_available()`` is false), so links do not stay
  "pending",
- a system bus (``dbus-daemon --system --fork``),
then runs commands inside with ``nsenter``; pid 1 inside is a small reaper.
Killing that process kills everything in the pid namespace; the mounts and links
vanish with it. The host's /etc/systemd/network, D-Bus and links are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
NETWORKD = "/lib/systemd/systemd-networkd"
TOOLS = ("unshare", "nsenter", "ip", "dbus-daemon", "busctl")
BUS_NAME = "org.freedesktop.network1"
MANAGER = (BUS_NAME, "/org/freedesktop/network1", "org.freedesktop.network1.Manager")
LINK = "org.freedesktop.network1.Link"

SETUP = r"""
set -e
ip link set lo up
cgroups="$STATE/cgroups"
mkdir "$cgroups"
mount --rbind /sys/fs/cgroup "$cgroups"
mount -t sysfs -o ro sysfs /sys
mount --rbind "$cgroups" /sys/fs/cgroup
for dir in /run/systemd /run/dbus /run/netns /etc/systemd/network; do
    mkdir -p "$dir"
    mount -t tmpfs -o mode=0755 tmpfs "$dir"
done
mkdir -p /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
dbus-daemon --system --fork --nopidfile --print-pid > "$STATE/dbus.pid"
touch "$STATE/ready"
exec "$PYTHON" -c "$REAPER"
"""

# Pid 1 of the sandbox: reaps orphans (a killed networkd must not stay a zombie).
REAPER = """
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.05)
"""


def missing_requirements() -> str | None:
    """Why the sandbox cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, links)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install util-linux iproute2 dbus systemd)"
    if not os.access(NETWORKD, os.X_OK):
        return f"{NETWORKD} not installed (apt-get install systemd)"
    try:
        import pwd

        pwd.getpwnam("systemd-network")
        pwd.getpwnam("messagebus")
    except KeyError as error:
        return f"user missing: {error}"
    return None


class NetworkdSandbox:
    """Private namespaces with a system bus; networkd is started on request."""

    def __init__(self, state_dir: Path) -> None:
        self.state = state_dir
        self.state.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self.init_pid = 0  # the sandbox's pid 1, as the host sees it
        self.networkd_pid: int | None = None  # as the sandbox sees it

    # --- life cycle -----------------------------------------------------------

    def __enter__(self) -> NetworkdSandbox:
        unshare = "unshare -m -n -p -f --kill-child --mount-proc --propagation private"
        with open(self.state / "setup.log", "wb") as log:
            self.process = subprocess.Popen(
                [*unshare.split(), "sh", "-c", SETUP],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "STATE": str(self.state),
                    "PYTHON": sys.executable,
                    "REAPER": REAPER,
                },
            )
        try:
            self._wait_for(lambda: (self.state / "ready").exists(), "sandbox setup")
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            self.init_pid = int(children.read_text().split()[0])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.kill()  # --kill-child: pid 1 and all inside die with it
            self.process.wait()

    def _wait_for(self, condition: Any, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process is not None and self.process.poll() is not None:
                log = (self.state / "setup.log").read_text()
                raise RuntimeError(f"sandbox died during {what}:\n{log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not done after {timeout}s")
            time.sleep(0.02)

    # --- running things inside ------------------------------------------------

    def run(
        self, *argv: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = ["nsenter", "-t", str(self.init_pid), "-m", "-n", "-p", "--", *argv]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} -> {result.returncode}\n{result.stdout}{result.stderr}"
            )
        return result

    def sh(self, script: str, check: bool = True) -> str:
        return self.run("sh", "-ec", script, check=check).stdout

    def doctor(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python3 -m ipamguard doctor ARGS`` inside, from this checkout."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO_ROOT)}
        return self.run(sys.executable, "-m", "ipamguard", "doctor", *args, check=False, env=env)

    def doctor_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        result = self.doctor("--json", *args)
        assert "Traceback" not in result.stderr, result.stderr
        try:
            return result.returncode, json.loads(result.stdout)
        except json.JSONDecodeError as error:
            raise AssertionError(f"not JSON: {result.stdout!r} {result.stderr!r}") from error

    # --- networkd and D-Bus ---------------------------------------------------

    def start_networkd(self) -> None:
        log = self.state / "networkd.log"
        pid = self.sh(f"{NETWORKD} >{log} 2>&1 & echo $!")
        self.networkd_pid = int(pid)
        self._wait_for(self._networkd_answers, "networkd start")

    def stop_networkd(self) -> None:
        assert self.networkd_pid is not None
        self.kill_inside(self.networkd_pid)
        self.networkd_pid = None

    def stop_dbus(self) -> None:
        self.kill_inside(int((self.state / "dbus.pid").read_text()))

    def kill_inside(self, pid: int) -> None:
        """Kill one process we started in the sandbox (by its pid there), wait for it."""
        self.run("kill", str(pid))
        self._wait_for(
            lambda: self.run("kill", "-0", str(pid), check=False).returncode != 0,
            f"pid {pid} to exit",
        )

    def _networkd_answers(self) -> bool:
        return self.busctl("call", *MANAGER, "ListLinks", check=False) is not None

    def busctl(self, *args: str, check: bool = True) -> Any:
        """``busctl --system --json=short ARGS``, the answer's data (None on failure)."""
        result = self.run("busctl", "--system", "--json=short", *args, check=check)
        if result.returncode != 0:
            return None
        if not result.stdout.strip():
            return []  # a method without a return value
        return json.loads(result.stdout)["data"]

    def reload_networkd(self) -> None:
        self.busctl("call", *MANAGER, "Reload")

    def link_paths(self) -> dict[str, str]:
        """Link name -> networkd's D-Bus object path (Manager.ListLinks)."""
        (links,) = self.busctl("call", *MANAGER, "ListLinks")
        return {name: path for _index, name, path in links}

    def admin_states(self, names: Sequence[str]) -> dict[str, str]:
        """AdministrativeState of each link, read over D-Bus with busctl."""
        paths = self.link_paths()
        return {
            name: self.busctl("get-property", BUS_NAME, paths[name], LINK, "AdministrativeState")
            for name in names
        }

    def wait_for_states(self, wanted: dict[str, set[str]], timeout: float = 10.0) -> None:
        def reached() -> bool:
            try:
                states = self.admin_states(list(wanted))
            except (KeyError, AssertionError):
                return False
            return all(states[name] in ok for name, ok in wanted.items())

        self._wait_for(reached, f"networkd states {wanted}", timeout)

    def master(self, link: str) -> str | None:
        """The bridge ``link`` is enslaved to (from the sandbox's sysfs), or None."""
        target = self.sh(f"readlink /sys/class/net/{link}/master || true").strip()
        return os.path.basename(target) or None

    def wait_for(self, condition: Any, what: str, timeout: float = 10.0) -> None:
        self._wait_for(condition, what, timeout)
