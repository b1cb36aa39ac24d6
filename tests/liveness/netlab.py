"""A bridge and a "container" in two network namespaces of their own, for the probe tests.

``NetLab`` creates (``ip netns add``, deleted again by ``close``):

- ``host``: the bridge ``ipgbr0`` (up, no address: the probe needs none) and ``veth-h``,
  enslaved to it; the probe runs here (``ip netns exec``, which also mounts a sysfs of
  that namespace);
- ``peer``: ``eth0``, the other end of the veth, holding 10.99.0.5/24 and fd99::5/64
  (nodad). Nothing runs in it: like a container's namespace that podman keeps bound
  under /run/netns, it answers with no process inside.

The host's own interfaces are never touched. Names carry this process's pid, so a run
removes what a killed earlier run left behind, and parallel runs do not collide.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "ipg-probe-"
BRIDGE = "ipgbr0"
PEER_V4 = "10.99.0.5"
PEER_V6 = "fd99::5"
TOOLS = ("ip", "setpriv", "unshare")
_counter = itertools.count()

# Runs inside the host namespace: argv[1] = JSON {call, args}; prints JSON.
PROBE = r"""
import json, sys, time
request = json.loads(sys.argv[1])
if request.get("deny_packet"):
    exec(request["deny_packet"])
from ipamguard.liveness import bridges, probe
print("probing", file=sys.stderr, flush=True)
start = time.monotonic()
if request["call"] == "probe_addresses":
    results = probe.probe_addresses(request["interface"], request["addresses"], **request["kw"])
elif request["call"] == "probe_networks":
    nested = bridges.probe_networks(request["wanted"], request["config_dir"], **request["kw"])
    results = {f"{n}/{a}": r for n, answers in nested.items() for a, r in answers.items()}
else:
    find = getattr(bridges, request["call"])
    info = find(request["config_dir"], request["network"])
    results = bridges.probe_network(info, request["addresses"], **request["kw"])
wall = time.monotonic() - start
print(json.dumps({
    "wall": wall,
    "results": {
        a: {"status": r.status, "reason": r.reason, "mac": r.mac, "elapsed": r.elapsed}
        for a, r in results.items()
    },
}))
"""

# What systemd's RestrictAddressFamilies= does: a seccomp filter that fails
# socket(AF_PACKET, ...) with EAFNOSUPPORT (classic BPF, installed with prctl).
DENY_PACKET = r"""
import ctypes, errno, platform, struct
ARCH = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}[platform.machine()]
def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, RET = 0x20, 0x15, 0x06
program = b"".join([
    insn(LD, 0, 0, 4), insn(JEQ, 0, 5, ARCH[0]),    # seccomp_data.arch
    insn(LD, 0, 0, 0), insn(JEQ, 0, 3, ARCH[1]),    # .nr == socket
    insn(LD, 0, 0, 16), insn(JEQ, 0, 1, 17),        # .args[0] == AF_PACKET
    insn(RET, 0, 0, 0x00050000 | errno.EAFNOSUPPORT),
    insn(RET, 0, 0, 0x7FFF0000),
])
buffer = ctypes.create_string_buffer(program)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(len(program) // 8, ctypes.addressof(buffer))
libc = ctypes.CDLL(None, use_errno=True)
ulong = ctypes.c_ulong
assert libc.prctl(38, ulong(1), ulong(0), ulong(0), ulong(0)) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, ulong(2), ctypes.byref(prog), ulong(0), ulong(0)) == 0, ctypes.get_errno()
"""


def missing_requirements() -> str | None:
    """Why the lab cannot run here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "the probe tests need root (network namespaces, raw sockets)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools for the probe tests: {', '.join(missing)}"
    return None


def require_lab() -> None:
    """Skip (locally) or fail (with $CI set) when the lab cannot run here."""
    reason = missing_requirements()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"probe tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Probe:
    """What one probe call inside the host namespace returned."""

    wall: float  # seconds the call took, sockets opened and closed included
    results: dict[str, dict[str, Any]]

    def status(self, address: str) -> str:
        return str(self.results[address]["status"])

    def reason(self, address: str) -> str:
        return str(self.results[address]["reason"])


class NetLab:
    """Two namespaces joined by a veth on a bridge (see the module's docstring)."""

    def __init__(self) -> None:
        _remove_stale()
        base = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.host, self.peer = f"{base}-h", f"{base}-c"
        self.namespaces: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for ns in (self.host, self.peer):
            run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
        self.ip(self.host, "link", "add", BRIDGE, "type", "bridge")
        self.ip(
            self.host, "link", "add", "veth-h", "type", "veth", "peer", "eth0", "netns", self.peer
        )
        self.ip(self.host, "link", "set", "veth-h", "master", BRIDGE)
        for ns, link in ((self.host, BRIDGE), (self.host, "veth-h"), (self.peer, "eth0")):
            self.ip(ns, "link", "set", link, "up")
        self.ip(self.peer, "addr", "add", f"{PEER_V4}/24", "dev", "eth0")
        self.ip(self.peer, "addr", "add", f"{PEER_V6}/64", "dev", "eth0", "nodad")
        self.peer_mac = self.link(self.peer, "eth0")["address"]
        self.wait_forwarding("veth-h")

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "-n", ns, *args, check=check)

    def link(self, ns: str, name: str) -> dict[str, Any]:
        links: list[dict[str, Any]] = json.loads(self.ip(ns, "-j", "link", "show", name).stdout)
        return links[0]

    def wait_forwarding(self, port: str, timeout: float = 5.0) -> None:
        """Until the bridge port forwards and both ends of the veth have a carrier."""
        deadline = time.monotonic() + timeout
        state = Path(f"/sys/class/net/{port}/brport/state")  # seen through ip netns exec
        while True:
            up = all(
                "LOWER_UP" in self.link(ns, name)["flags"]
                for ns, name in ((self.host, port), (self.peer, "eth0"))
            )
            forwarding = self.exec(self.host, "cat", str(state), check=False).stdout.strip()
            if up and forwarding == "3":  # BR_STATE_FORWARDING
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{port} not forwarding (state {forwarding!r}, up {up})")
            time.sleep(0.02)

    def exec(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, *argv, check=check)

    def probe(
        self,
        addresses: Sequence[str],
        *,
        interface: str = BRIDGE,
        timeout: float = 0.5,
        attempts: int = 3,
        prefix: Sequence[str] = (),
        deny_packet: bool = False,
        meanwhile: Callable[[], object] | None = None,
    ) -> Probe:
        """probe_addresses(interface, addresses) run in the host namespace; ``meanwhile``
        runs about 0.1 s after the probe started."""
        request = {"call": "probe_addresses", "interface": interface}
        return self._python(request, addresses, timeout, attempts, prefix, deny_packet, meanwhile)

    def probe_network(
        self,
        config_dir: Path,
        network: str,
        addresses: Sequence[str],
        *,
        cni: bool = False,
        timeout: float = 0.5,
        prefix: Sequence[str] = (),
    ) -> Probe:
        """probe_network((cni_)bridge_for_network(config_dir, network), addresses)."""
        call = "cni_bridge_for_network" if cni else "bridge_for_network"
        request = {"call": call, "config_dir": str(config_dir), "network": network}
        return self._python(request, addresses, timeout, 3, prefix, False)

    def probe_networks(
        self, config_dir: Path, wanted: dict[str, list[str]], *, timeout: float = 0.5
    ) -> Probe:
        """probe_networks(wanted, config_dir); results keyed "network/address"."""
        request = {"call": "probe_networks", "config_dir": str(config_dir), "wanted": wanted}
        return self._python(request, [], timeout, 3, (), False)

    def _python(
        self,
        request: dict[str, Any],
        addresses: Sequence[str],
        timeout: float,
        attempts: int,
        prefix: Sequence[str],
        deny_packet: bool,
        meanwhile: Callable[[], object] | None = None,
    ) -> Probe:
        request["addresses"] = list(addresses)
        request["kw"] = {"timeout": timeout, "attempts": attempts}
        if deny_packet:
            request["deny_packet"] = DENY_PACKET
        argv = [*prefix, sys.executable, "-c", PROBE, json.dumps(request)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.host, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert proc.stderr is not None
        started = proc.stderr.readline()
        if meanwhile is not None and started == "probing\n":
            time.sleep(0.1)
            meanwhile()
        out, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"probe failed (rc={proc.returncode}):\n{started}{err}")
        answer = json.loads(out)
        return Probe(answer["wall"], answer["results"])


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed (rc={proc.returncode}): {proc.stderr}")
    return proc


def _remove_stale() -> None:
    """Delete the namespaces of earlier runs whose process is gone."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        if not name.startswith(PREFIX):
            continue
        pid = name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            run("ip", "netns", "del", name, check=False)
