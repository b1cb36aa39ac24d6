"""A churn that tries hard to make the daemon release a live allocation.

Shared by the CI test (tests/e2e/test_churn_e2e.py, a short run per podman flavour)
and the soak (bench/churn.py, 300 cycles). In a sandbox (tests/e2e/sandbox.py: a
real rootful podman, its API service and journald), ``ipamguard daemon`` repairs at
grace 0 with kinds leaked, stale and orphan-network while ``Churn.run`` drives, for
N cycles, a seeded random mix of:

- ``run``/``stop``/``start``/``rm`` of containers with static and dynamic addresses
  on one or two networks (each network's dynamic range is its upper half, static
  addresses come from the lower half, so the driver never asks for a taken one);
  ``pause``/``unpause``, ``restart``, ``connect``/``disconnect`` (a network added to
  or taken from a running or stopped container);
- ``kill9``: kill -9 of a container's process while its conmon's exit command fails
  (strace injects ENOENT into conmon's execve): podman then says stopped/exited with
  the network still set up, and a later ``start`` reuses the addresses;
- ``loop``: a ``--restart=always`` container whose command exits after a second
  (podman < 5.1 restarts without a teardown and holds the address while "stopped";
  5.1+ tears down and sets up at every restart); removed after some cycles; one
  crash loop in the second root too (its restarts run ``podman --root ALT ...``);
- ``alt``: run/start/stop/rm in a second storage root named only by
  CONTAINERS_STORAGE_CONF; ``remote``: the same through ``podman --remote`` to a
  second API service of that root (up for a few cycles: nothing may be released
  while it runs, so leaks wait for it to stop);
- ``restore``: ``ipamguard restore --yes`` of one of the newest backups (a full
  copy or a release record), while another operation runs: it must refuse, or
  apply without taking a live address;
- ``burst``: two to four of run/stop/start/rm at once, on distinct containers;
- ``api-restart``: podman's API service down for one operation (the daemon is blind
  meanwhile), then up again;
- ``net``: the third network removed (``network rm -f``) and created again with a
  container on it (podman 4.3 leaves the removed network's bucket: orphan-network);
- every ``leak_every`` cycles a real leak through podman's own error path:
  ``podman rm -f`` (a leaked ID) or ``podman stop`` (a stale one) while strace
  injects EIO into podman's writes of ipam.db (``-P ipam.db -e
  inject=pwrite64:error=EIO``); podman says that it could not clean up the network
  and goes on. The plant is confirmed by podman's own error line. Its conmon's exit
  command fails meanwhile, as in ``kill9``: otherwise podman 4.3's cleanup process,
  not traced, often wins the race and tears down (no leak).

With ``conmon_delay`` (default 0.3 s) every container start waits that long between
its network setup and its conmon (a conmon wrapper named in containers.conf): the
window that no liveness source sees is wider for every start and restart.

After every cycle the invariants, with Go's bbolt as the reader of ipam.db:

1. every running container, and every stopped one whose network podman still has
   set up (SandboxKey), holds each of its addresses in ipam.db (IP key and ``ids``);
2. no two such containers share an address;
3. Go's ``tx.Check()`` finds nothing;
4. podman refuses an address ("already allocated") only to a planted leak (or one
   a restore put back) that is not healed yet;
5. no podman operation other than a plant fails to clean up a network;
6. every LEAK_RELEASED entry of the journal is judged against the driver's timeline
   of that container: released while it was live (from the start of the operation
   that made it live to the end of the one that ended it) is a WRONG RELEASE.

At the end (the second API service stopped, a few seconds for the daemon): no
leak left (an allocation of a container that is neither running nor set up),
every planted leak healed (or gone with its network, or taken by a restore), the
daemon still running, and its RSS at the end at most ``rss_growth_limit_mb`` above
its RSS after cycle ``rss_cycle``.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import json
import os
import random
import re
import shlex
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oracle_tool import Oracle, held_of
from sandbox import IMAGE, IPAM_DB, REPO_ROOT, Sandbox

from ipamguard import messages

# --------------------------------------------------------------------------- setup

NETWORKS = {  # name: (subnet, dynamic range)
    "churn-a": ("172.20.1.0/24", "172.20.1.128/25"),
    "churn-b": ("172.20.2.0/24", "172.20.2.128/25"),
}
SCRATCH = "churn-c"  # removed and created again (the "net" operation)
SCRATCH_SUBNET = ("172.20.3.0/24", "172.20.3.128/25")
STATIC_HOSTS = range(10, 121)  # below the dynamic range

DEFAULT, ALT = "default", "alt"
ALT_CONF = "/etc/containers/churn-alt-storage.conf"
ALT_STORAGE = (
    b'[storage]\ndriver = "overlay"\ngraphroot = "/var/lib/containers/churn-alt/storage"\n'
    b'runroot = "/run/containers/churn-alt/storage"\n'
)
ALT_ENV = {"CONTAINERS_STORAGE_CONF": ALT_CONF}
ALT_SOCKET = "/run/churn-alt.sock"
ALT_URL = f"unix://{ALT_SOCKET}"

CONFIG_PATH = "/run/churn/ipamguard.toml"
DAEMON_STDERR = "/run/churn/daemon.stderr"
SLOW_CONMON = "/run/churn/conmon"
PLANT_TRACE = "/run/churn/plant.strace"
BACKUP_DIR = "/var/lib/ipamguard/backups"
DAEMON_CONFIG = f"""\
[repair]
enabled = true
grace_seconds = 0
kinds = ["leaked", "stale", "orphan-network"]
[paths]
backup_dir = "{BACKUP_DIR}"
"""

SLEEPER = ("sleep", "100000")
CRASHER = ("sh", "-c", "sleep 1; exit 3")

# podman's words
ALLOCATED = re.compile(
    r"requested ip address (\S+) is already allocated to container ID ([0-9a-f]{64})"
)
# the teardown failed to free the addresses: 4.3 logs and goes on, 5.4 says it in its error
TEARDOWN_FAILED = re.compile(
    r"Unable to clean up network|removing container [0-9a-f]{64} network|"
    r"tearing down network namespace"
)
LIVE_STATUSES = frozenset({"running", "paused", "stopping"})

# the driver's timeline of a container
LIVE, DEAD, PLANTED, STARTING = "live", "dead", "planted", "starting"
SLACK = 0.25  # seconds: a release is logged this long after its write at most
WRONG = "WRONG RELEASE"

JOURNAL_IDS = {
    messages.LEAK_RELEASED: "released",
    messages.REPAIR_REFUSED: "refused",
    messages.LEAK_FOUND: "found",
    messages.FINDING_RESOLVED: "resolved",
    messages.DB_UNREADABLE: "db-unreadable",
    messages.LOCK_TIMEOUT: "lock-timeout",
    messages.PODMAN_UNREACHABLE: "podman-unreachable",
    messages.PODMAN_RECONNECTED: "podman-reconnected",
}


@dataclass
class ChurnSettings:
    cycles: int = 300
    seed: int = 0
    leak_every: int = 10
    max_default: int = 10  # containers of the default root (crash loops aside)
    max_alt: int = 4
    max_loops: int = 2
    settle_seconds: float = 20.0  # at most, at the end, for the last leaks to heal
    rss_cycle: int = 50  # memory measured after this cycle, and at the end
    rss_growth_limit_mb: float = 5.0
    op_timeout: float = 90.0
    pause: float = 0.3  # at most, before each cycle's operation (a random share of it)
    conmon_delay: float = 0.3  # seconds between a start's network setup and its conmon


@dataclass
class Box:
    """A container the churn made (its model; podman is asked when it matters)."""

    name: str
    root: str  # DEFAULT or ALT
    nets: dict[str, str | None]  # network -> static address, or None (dynamic)
    loop: bool = False
    cid: str = ""
    state: str = "new"  # running, paused, stopped, killed, stale, gone
    ips: dict[str, str] = field(default_factory=dict)  # last seen addresses
    until: int = 0  # crash loops: removed at this cycle


RUNNING, STOPPED, KILLED, STALE, GONE = "running", "stopped", "killed", "stale", "gone"
PAUSED = "paused"


@dataclass(frozen=True)
class Seen:
    """One container as podman inspects it."""

    cid: str
    name: str
    root: str
    status: str
    sandbox: str  # NetworkSettings.SandboxKey: the network is set up
    ips: dict[str, str]
    restarts: int
    started: str
    pid: int

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES or bool(self.sandbox)

    @property
    def fingerprint(self) -> tuple[object, ...]:
        return (self.status, self.sandbox, self.restarts, self.started, self.pid)


@dataclass
class Plant:
    cid: str
    how: str  # "rm" (leaked) or "stop" (stale)
    at: float  # the plant's operation ended
    addresses: set[tuple[str, str]]
    left: set[tuple[str, str]]
    healed_at: float | None = None
    vanished: bool = False  # gone with its network, or taken by a restore
    missing: int = 0  # checks that found it gone from ipam.db with no release logged


@dataclass
class ChurnResult:
    flavour: str
    seed: int
    cycles: int = 0
    seconds: float = 0.0
    operations: Counter[str] = field(default_factory=Counter)
    podman_errors: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # podman's "already allocated"
    daemon_refusals: Counter[str] = field(default_factory=Counter)
    journal: Counter[str] = field(default_factory=Counter)
    releases: Counter[str] = field(default_factory=Counter)  # by classification
    restores: Counter[str] = field(default_factory=Counter)
    plants: Counter[str] = field(default_factory=Counter)
    planted: int = 0
    healed: int = 0
    vanished: int = 0  # planted leaks gone with their network, or taken by a restore
    heal_seconds: list[float] = field(default_factory=list)
    leaks_left: dict[str, str] = field(default_factory=dict)
    wrong_releases: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    rss_kb: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    podman_ops: int = 0
    unstable_skipped: int = 0
    slowest: list[tuple[float, str]] = field(default_factory=list)  # (seconds, operation)
    history: list[str] = field(default_factory=list)  # every operation, in order
    daemon_exit: int | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        ops = " ".join(f"{k} {v}" for k, v in sorted(self.operations.items()))
        heal = ""
        if self.heal_seconds:
            heal = (
                f" (release after the plant: median {statistics.median(self.heal_seconds):.2f} s,"
                f" max {max(self.heal_seconds):.2f} s)"
            )
        rss = ", ".join(f"{k} {v / 1024:.1f} MB" for k, v in self.rss_kb.items())
        per_op = self.cpu_seconds / self.podman_ops * 1000 if self.podman_ops else 0.0
        rows = [
            ("flavour / seed", f"podman {self.flavour}, seed {self.seed}"),
            ("cycles", f"{self.cycles} in {self.seconds:.0f} s"),
            ("operations", f"{ops} (podman operations: {self.podman_ops})"),
            ("leak plants", _counts(self.plants) or "none"),
            (
                "leaks planted / healed",
                f"{self.planted} / {self.healed}{heal}; gone with their network or a restore: "
                f"{self.vanished}; "
                f"leaks left at the end: {len(self.leaks_left)}",
            ),
            ("WRONG RELEASES", str(len(self.wrong_releases))),
            ("releases by verdict", _counts(self.releases) or "none"),
            ("podman refusals", _counts(self.refusals) or "none"),
            ("daemon refusals", _counts(self.daemon_refusals) or "none"),
            ("restore", _counts(self.restores) or "none"),
            ("journal", _counts(self.journal) or "none"),
            ("podman errors", _counts(self.podman_errors) or "none"),
            ("daemon RSS", rss or "not measured"),
            ("daemon CPU", f"{self.cpu_seconds:.2f} s, {per_op:.1f} ms per podman operation"),
            ("unstable skipped", f"{self.unstable_skipped} crash-loop views changed mid-check"),
            ("slowest operation", f"{self.slowest[0][0]:.1f} s" if self.slowest else "-"),
            ("invariant failures", str(len(self.failures))),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        for title, items in (
            ("wrong releases", self.wrong_releases),
            ("failures", self.failures),
            ("anomalies", self.anomalies),
        ):
            if items:
                lines.append(f"{title}:")
                lines += [f"  - {item}" for item in items[:40]]
                if len(items) > 40:
                    lines.append(f"  ... and {len(items) - 40} more")
        if self.failures:
            lines.append(f"reproduce with seed {self.seed} (podman {self.flavour})")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour,
            "seed": self.seed,
            "cycles": self.cycles,
            "seconds": round(self.seconds, 1),
            "operations": dict(self.operations),
            "podman_ops": self.podman_ops,
            "plants": dict(self.plants),
            "planted": self.planted,
            "healed": self.healed,
            "vanished": self.vanished,
            "heal_seconds": [round(s, 3) for s in self.heal_seconds],
            "leaks_left": self.leaks_left,
            "wrong_releases": self.wrong_releases,
            "releases": dict(self.releases),
            "refusals": dict(self.refusals),
            "daemon_refusals": dict(self.daemon_refusals),
            "restores": dict(self.restores),
            "journal": dict(self.journal),
            "podman_errors": dict(self.podman_errors),
            "rss_kb": self.rss_kb,
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cpu_ms_per_op": round(self.cpu_seconds / max(self.podman_ops, 1) * 1000, 2),
            "failures": self.failures,
            "anomalies": self.anomalies,
            "daemon_exit": self.daemon_exit,
            "slowest": self.slowest,
            "history": self.history,
        }


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counter.most_common())


# --------------------------------------------------------------------------- the churn


class Churn:
    """See the module docstring. ``Churn(sb, oracle, settings).run()`` -> ChurnResult."""

    def __init__(
        self,
        sb: Sandbox,
        oracle: Oracle,
        settings: ChurnSettings,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.sb = sb
        self.oracle = oracle
        self.s = settings
        self.log = log or (lambda line: None)
        self.rng = random.Random(settings.seed)
        self.result = ChurnResult(sb.flavour, settings.seed)
        self.boxes: list[Box] = []
        self.counter = 0
        self.cycle = 0
        self.life: dict[str, list[tuple[float, str]]] = {}  # container ID -> timeline
        self.net_life: list[tuple[float, bool]] = []  # the scratch network exists?
        self.planted: dict[str, Plant] = {}
        self.restore_planted: set[str] = set()
        self.bait: list[tuple[str, str]] = []  # planted static addresses: ask for them
        self.history = self.result.history  # one line per operation, for the failure report
        self.cursor: str | None = None
        self.daemon: subprocess.Popen[Any] | None = None
        self.daemon_pid = 0
        self.alt_service: subprocess.Popen[Any] | None = None
        self.alt_until = 0
        self.last_held: dict[tuple[str, str], str] = {}
        self._cpu0 = 0.0
        self.lock = threading.RLock()
        self.chosen: set[str] = set()  # operation kinds chosen so far

    # ------------------------------------------------------------------ driver

    def run(self) -> ChurnResult:
        started = time.monotonic()
        try:
            self.setup()
            for cycle in range(1, self.s.cycles + 1):
                self.cycle = cycle
                self.one_cycle()
                self.check()
                self.result.cycles = cycle
                if cycle == self.s.rss_cycle:
                    self.result.rss_kb[f"cycle {cycle}"] = self._rss()
                if cycle % 10 == 0 or self.result.failures:
                    self.log(self._progress())
                if self.daemon is not None and self.daemon.poll() is not None:
                    self._fail(f"the daemon exited (rc={self.daemon.returncode})")
                    break
            self.finish()
        finally:
            self.result.seconds = time.monotonic() - started
            self.teardown()
        return self.result

    def _progress(self) -> str:
        r = self.result
        live = sum(1 for b in self.boxes if b.state != GONE)
        return (
            f"cycle {self.cycle}: {live} containers, planted {r.planted}, healed {r.healed}, "
            f"wrong releases {len(r.wrong_releases)}, failures {len(r.failures)}"
        )

    def setup(self) -> None:
        sb = self.sb
        if self.s.conmon_delay > 0:
            self._slow_conmon(self.s.conmon_delay)
        for name, (subnet, dynamic) in NETWORKS.items():
            sb.podman("network", "create", "--subnet", subnet, "--ip-range", dynamic, name)
        self._net_create(count=False)
        sb.write_file(ALT_CONF, ALT_STORAGE)
        archive = "/var/tmp/bb-image.tar"
        if not sb.host_path(archive).exists():
            sb.podman("save", "--quiet", "-o", archive, IMAGE)
        sb.podman("load", "--quiet", "-i", archive, env=ALT_ENV)
        sb.start_podman_service()
        sb.start_journald()
        config = sb.host_path(CONFIG_PATH)
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(DAEMON_CONFIG)
        # its stderr (anything before the journal takes over) to a file in the sandbox
        self.daemon = sb.popen(
            "sh", "-c", f'exec "$@" >/dev/null 2>{DAEMON_STDERR}', "sh",
            sb.python, "-m", "ipamguard", "daemon", "--config", CONFIG_PATH,
            env={"PYTHONPATH": str(REPO_ROOT)}, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.daemon_pid = _child_pid(self.daemon.pid)
        if not sb.wait_journal(timeout=60, MESSAGE_ID=messages.DAEMON_STARTED):
            raise AssertionError(f"the daemon did not start:\n{self._daemon_stderr()}")
        self.result.rss_kb["start"] = self._rss()
        self._cpu0 = _cpu_seconds(self.daemon_pid)

    def _slow_conmon(self, delay: float) -> None:
        """Every container start waits ``delay`` seconds between its network setup and
        its conmon (containers.conf's conmon_path names a wrapper that sleeps, then
        execs conmon): the window that no liveness source sees, wider for everyone."""
        sb = self.sb
        real = sb.podman("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
        wrapper = sb.host_path(SLOW_CONMON)
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        wrapper.write_text(
            "#!/bin/sh\n# tests/e2e/churn.py: a slow conmon (conmon --version is not delayed)\n"
            f'case " $* " in *" --version "*) ;; *) sleep {delay:g};; esac\n'
            f'exec {real} "$@"\n'
        )
        wrapper.chmod(0o755)
        conf = sb.host_path("/etc/containers/containers.conf")
        lines = conf.read_text().splitlines()
        at = lines.index("[engine]") + 1
        lines.insert(at, f'conmon_path = ["{SLOW_CONMON}"]')
        conf.write_text("\n".join(lines) + "\n")
        path = sb.podman("info", "--format", "{{.Host.Conmon.Path}}").stdout.strip()
        assert path == SLOW_CONMON, f"podman ignores conmon_path: {path}"

    def teardown(self) -> None:
        # a frozen (paused) container cannot die: the sandbox could not remove its cgroups
        for box in self._pick(self.boxes, PAUSED):
            self.sb.podman("unpause", box.name, check=False)
        self.stop_alt_service()
        if self.daemon is not None and self.daemon.poll() is None:
            self.sb.signal(self.daemon, signal.SIGTERM)
            try:
                self.result.daemon_exit = self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.sb.signal(self.daemon, signal.SIGKILL)
                self.daemon.wait()
        elif self.daemon is not None:
            self.result.daemon_exit = self.daemon.returncode

    def one_cycle(self) -> None:
        if self.alt_service is not None and self.cycle >= self.alt_until:
            self.stop_alt_service()
        for box in [b for b in self.boxes if b.loop and b.state != GONE and self.cycle >= b.until]:
            self.op_rm(box)
        if self.s.leak_every and self.cycle % self.s.leak_every == 0:
            self.op_plant("rm" if (self.cycle // self.s.leak_every) % 2 else "stop")
        kind = self._choose()
        time.sleep(self.rng.random() * self.s.pause)  # shift the phase against the daemon's
        if kind == "restore":
            self.op_restore()
        else:
            self._do(kind)

    def _choose(self) -> str:
        default = [b for b in self._boxes(DEFAULT) if not b.loop]
        loops = [b for b in self._boxes(DEFAULT) if b.loop]
        weights = {
            "run": 3.0 if len(default) < self.s.max_default else 0.0,
            "stop": 3.0 if self._pick(default, RUNNING) else 0.0,
            "start": 3.0 if self._pick(default, STOPPED, KILLED, STALE) else 0.0,
            "rm": 2.0 if self._pick(default, RUNNING, STOPPED, KILLED, STALE) else 0.0,
            "pause": 0.7 if self._pick(default, RUNNING) else 0.0,
            "unpause": 2.0 if self._pick(default, PAUSED) else 0.0,
            "restart": 1.0 if self._pick(default, RUNNING) else 0.0,
            "connect": 0.8 if self._connectable(default) else 0.0,
            "disconnect": 0.8 if self._disconnectable(default) else 0.0,
            "kill9": 1.5 if self._pick(default, RUNNING) else 0.0,
            "loop": 0.7 if len(loops) < self.s.max_loops else 0.0,
            "alt": 2.0,
            "remote": 1.0,
            "restore": 1.5,
            "net": 0.3,
            "burst": 1.0 if default else 0.0,
            "api-restart": 0.3,
        }
        kinds = [k for k, w in weights.items() if w > 0]
        fresh = [k for k in kinds if k not in self.chosen]
        if fresh and self.rng.random() < 0.6:  # every kind early, even in a short run
            kind = self.rng.choice(fresh)
        else:
            kind = self.rng.choices(kinds, [weights[k] for k in kinds])[0]
        self.chosen.add(kind)
        return kind

    def _do(self, kind: str) -> None:
        default = [b for b in self._boxes(DEFAULT) if not b.loop]
        if kind == "run":
            self.op_run(DEFAULT)
        elif kind == "stop":
            self.op_stop(self.rng.choice(self._pick(default, RUNNING)))
        elif kind == "start":
            self.op_start(self.rng.choice(self._pick(default, STOPPED, KILLED, STALE)))
        elif kind == "rm":
            self.op_rm(self.rng.choice(self._pick(default, RUNNING, STOPPED, KILLED, STALE)))
        elif kind in ("pause", "unpause", "restart"):
            wanted = PAUSED if kind == "unpause" else RUNNING
            self.op_simple(kind, self.rng.choice(self._pick(default, wanted)))
        elif kind == "connect":
            self.op_connect(self.rng.choice(self._connectable(default)))
        elif kind == "disconnect":
            self.op_disconnect(self.rng.choice(self._disconnectable(default)))
        elif kind == "kill9":
            self.op_kill9(self.rng.choice(self._pick(default, RUNNING)))
        elif kind == "loop":
            self.op_run(DEFAULT, loop=True)
        elif kind in ("alt", "remote"):
            self.op_alt(remote=kind == "remote")
        elif kind == "net":
            self.op_net()
        elif kind == "burst":
            self.op_burst()
        elif kind == "api-restart":
            self.op_api_restart()
        else:
            raise AssertionError(kind)

    def _boxes(self, root: str) -> list[Box]:
        return [b for b in self.boxes if b.root == root and b.state != GONE]

    @staticmethod
    def _pick(boxes: Iterable[Box], *states: str) -> list[Box]:
        return [b for b in boxes if b.state in states]

    # ------------------------------------------------------------------ podman

    def podman(
        self,
        op: str,
        *args: str,
        root: str = DEFAULT,
        remote: bool = False,
        plant: bool = False,
        wrap: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        """One podman operation (counted), its refusals and teardown failures judged."""
        argv = ["podman", *(("--remote", "--url", ALT_URL) if remote else ()), *args]
        env = ALT_ENV if root == ALT and not remote else None
        began = time.time()
        try:
            res = self.sb.run(*wrap, *argv, check=False, env=env, timeout=self.s.op_timeout)
        except AssertionError as error:  # a timeout: the sandbox killed it
            self._fail(f"{op}: {shlex.join(argv)}: {str(error).splitlines()[0]}")
            return subprocess.CompletedProcess(argv, 124, "", str(error))
        self._count(op, f"{shlex.join(argv)} -> {res.returncode} {_first_line(res.stderr)}", began)
        with self.lock:
            for ip, holder in ALLOCATED.findall(res.stderr):
                self._refusal(op, ip, holder, began)
        if TEARDOWN_FAILED.search(res.stderr) and not plant:
            self._fail(
                f"{op}: podman could not clean up a network without a plant: "
                f"{shlex.join(argv)}: {_first_line(res.stderr, 300)}"
            )
        if res.returncode != 0 and not ALLOCATED.search(res.stderr) and not plant:
            with self.lock:
                self.result.podman_errors[_normalize(res.stderr)] += 1
        return res

    def _count(self, op: str, what: str, began: float) -> None:
        """One podman operation done (thread-safe: bursts run several at once)."""
        now = time.time()
        began = began or now
        with self.lock:
            self.result.operations[op] += 1
            self.result.podman_ops += 1
            self.history.append(f"c{self.cycle} {began:.3f}+{now - began:.2f}s {op}: {what}")
            self.result.slowest.append((round(now - began, 2), f"c{self.cycle} {op}: {what}"))
            self.result.slowest = sorted(self.result.slowest, reverse=True)[:5]

    def _refusal(self, op: str, ip: str, holder: str, at: float) -> None:
        state = self._state_at(holder, at)
        if holder in self.planted and state in (PLANTED, DEAD, STARTING):
            self.result.refusals["already allocated: a planted leak, not healed yet"] += 1
            return
        if holder in self.restore_planted:  # a restore put it back (for whatever holder)
            self.result.refusals["already allocated: put back by a restore, not healed yet"] += 1
            return
        self.result.refusals["already allocated: NOT a planted leak"] += 1
        self._fail(
            f"{op}: podman refused {ip}: already allocated to {holder[:12]}, which is "
            f"{state or 'unknown to the churn'} and was not planted"
        )

    def _static(self, net: str) -> str | None:
        """A free static address of ``net`` (often a planted one, to be refused)."""
        taken = {b.nets.get(net) for b in self.boxes if b.state != GONE}
        baits = [ip for n, ip in self.bait if n == net and ip not in taken]
        if baits and self.rng.random() < 0.6:
            ip = baits[0]
            self.bait.remove((net, ip))
            return ip
        prefix = (NETWORKS.get(net) or SCRATCH_SUBNET)[0].rsplit(".", 1)[0]
        free = [f"{prefix}.{h}" for h in STATIC_HOSTS if f"{prefix}.{h}" not in taken]
        return self.rng.choice(free) if free else None

    def _networks(self, root: str) -> dict[str, str | None]:
        names = sorted(NETWORKS)
        if root == DEFAULT and self._scratch_exists():
            names.append(SCRATCH)
        chosen = sorted(self.rng.sample(names, self.rng.choice((1, 1, 2))))
        return {n: self._static(n) if self.rng.random() < 0.5 else None for n in chosen}

    def _name(self, prefix: str) -> str:
        with self.lock:
            self.counter += 1
            return f"{prefix}{self.counter}"

    # ------------------------------------------------------------------ operations

    def op_run(
        self,
        root: str,
        *,
        loop: bool = False,
        remote: bool = False,
        nets: dict[str, str | None] | None = None,
        op: str | None = None,
        until: int | None = None,
    ) -> Box | None:
        nets = nets if nets is not None else self._networks(root)
        until = until if until is not None else self.rng.randint(5, 25)
        box = Box(
            self._name(
                ("altloop" if loop else "alt") if root == ALT else ("loop" if loop else "c")
            ),
            root,
            nets,
            loop,
        )
        args = ["run", "-d", "--name", box.name]
        if loop:
            args.append("--restart=always")
        for net, ip in nets.items():
            args += ["--network", f"{net}:ip={ip}" if ip else net]
        args += [IMAGE, *(CRASHER if loop else SLEEPER)]
        began = time.time()
        res = self.podman(op or ("loop" if loop else "run"), *args, root=root, remote=remote)
        cid = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
        if res.returncode != 0 or not re.fullmatch(r"[0-9a-f]{64}", cid):
            self.podman("rm-failed", "rm", "-f", box.name, root=root, remote=remote)
            return None
        box.cid, box.state = cid, RUNNING
        box.until = self.cycle + until
        self._mark(cid, began, LIVE)
        with self.lock:
            self.boxes.append(box)
        return box

    def op_stop(self, box: Box, *, remote: bool = False) -> None:
        res = self.podman("stop", "stop", "-t", "0", box.name, root=box.root, remote=remote)
        if res.returncode == 0:
            self._set(box, STOPPED, DEAD, time.time())
        else:
            self._resync(box)

    def op_start(self, box: Box, *, remote: bool = False) -> None:
        began = time.time()
        # a planted stale container: its own leftover address may refuse the start
        self._mark(box.cid, began, STARTING if box.state == STALE else LIVE)
        res = self.podman("start", "start", box.name, root=box.root, remote=remote)
        if res.returncode == 0:
            self._set(box, RUNNING, LIVE, time.time())
        else:
            self._resync(box)

    def op_rm(self, box: Box, *, remote: bool = False) -> None:
        op = "loop-rm" if box.loop else "rm"
        res = self.podman(op, "rm", "-f", "-t", "0", box.name, root=box.root, remote=remote)
        if res.returncode == 0:
            self._set(box, GONE, DEAD, time.time())
        else:
            self._resync(box)

    def op_simple(self, verb: str, box: Box) -> None:
        """pause, unpause, or restart: the container stays live throughout."""
        args = (verb, "-t", "0", box.name) if verb == "restart" else (verb, box.name)
        res = self.podman(verb, *args)
        if res.returncode == 0:
            box.state = PAUSED if verb == "pause" else RUNNING
        self._resync(box)

    @staticmethod
    def _connectable(boxes: Iterable[Box]) -> list[Box]:
        return [
            b for b in boxes if b.state in (RUNNING, STOPPED) and len(set(NETWORKS) - set(b.nets))
        ]

    @staticmethod
    def _disconnectable(boxes: Iterable[Box]) -> list[Box]:
        return [b for b in boxes if b.state in (RUNNING, STOPPED) and len(b.nets) > 1]

    def op_connect(self, box: Box) -> None:
        """``podman network connect``: a running container gets an address at once, a
        stopped one at its next start."""
        net = self.rng.choice(sorted(set(NETWORKS) - set(box.nets)))
        ip = self._static(net) if self.rng.random() < 0.5 else None
        res = self.podman("connect", "network", "connect", *(("--ip", ip) if ip else ()),
                          net, box.name)  # fmt: skip
        if res.returncode == 0:
            box.nets[net] = ip
        self._resync(box)

    def op_disconnect(self, box: Box) -> None:
        """``podman network disconnect``: podman frees that network's address itself."""
        net = self.rng.choice(sorted(box.nets))
        res = self.podman("disconnect", "network", "disconnect", net, box.name)
        if res.returncode == 0:
            del box.nets[net]
            box.ips.pop(net, None)
        self._resync(box)

    def op_kill9(self, box: Box) -> None:
        """kill -9 of the container's process; its conmon's exit command fails (ENOENT)."""
        sb = self.sb
        seen = self._inspect_one(box)
        if seen is None or seen.status != "running":
            self._resync(box)
            return
        with self._cleanup_fails(box) as conmon:
            sb.run("kill", "-9", str(seen.pid), check=False)
            _wait("conmon to exit", lambda: not sb.host_path(f"/proc/{conmon}").exists(), 20)
        self._count("kill9", f"kill -9 {seen.pid} ({box.name}), conmon {conmon} traced", 0)
        self._resync(box)  # killed: stopped/exited, network still set up

    @contextlib.contextmanager
    def _cleanup_fails(self, box: Box) -> Iterator[str]:
        """Meanwhile conmon's exec of podman's exit command (the cleanup) fails with
        ENOENT (strace), as when the OOM killer takes it: only what the churn runs
        tears the container's network down, if anything does. Yields conmon's pid."""
        sb = self.sb
        conmon = str(self._conmon_pid(box))
        tracer = sb.popen(
            "strace", "-f", "-qq", "-o", "/dev/null", "-p", conmon,
            "-e", "trace=execve", "-e", "inject=execve:error=ENOENT",
        )  # fmt: skip
        try:
            _wait("strace to attach", lambda: _traced(sb, conmon), 10)
            yield conmon
        finally:
            sb.signal(tracer)
            with contextlib.suppress(subprocess.TimeoutExpired):
                tracer.wait(10)

    def op_alt(self, *, remote: bool) -> None:
        """run/start/stop/rm in the second root, by its storage.conf or through --remote."""
        if remote:
            self.start_alt_service()
        boxes = [b for b in self._boxes(ALT) if not b.loop]
        choices = ["run"] if len(boxes) < self.s.max_alt else []
        choices += ["stop"] * bool(self._pick(boxes, RUNNING))
        choices += ["start"] * bool(self._pick(boxes, STOPPED))
        choices += ["rm"] * bool(boxes)
        if not remote and not [b for b in self._boxes(ALT) if b.loop]:
            choices.append("loop")  # its restarts run `podman --root ALT container cleanup`
        what = self.rng.choice(choices)
        tag = "remote" if remote else "alt"
        if what in ("run", "loop"):
            op = "alt-loop" if what == "loop" else f"{tag}-run"
            self.op_run(ALT, remote=remote, op=op, loop=what == "loop")
            return
        if what == "rm":
            box = self.rng.choice(boxes)
            res = self.podman(f"{tag}-rm", "rm", "-f", "-t", "0", box.name, root=ALT, remote=remote)
            if res.returncode == 0:
                self._set(box, GONE, DEAD, time.time())
            else:
                self._resync(box)
            return
        box = self.rng.choice(self._pick(boxes, RUNNING if what == "stop" else STOPPED))
        began = time.time()
        if what == "start":
            self._mark(box.cid, began, LIVE)
        res = self.podman(f"{tag}-{what}", *((what, "-t", "0") if what == "stop" else (what,)),
                          box.name, root=ALT, remote=remote)  # fmt: skip
        if res.returncode == 0:
            if what == "stop":
                self._set(box, STOPPED, DEAD, time.time())
            else:
                self._set(box, RUNNING, LIVE, time.time())
        else:
            self._resync(box)

    def op_burst(self) -> None:
        """Two to four operations at once on distinct containers of the default root:
        event storms, and the daemon's look racing several podman processes."""
        boxes = self._pick(
            [b for b in self._boxes(DEFAULT) if not b.loop], RUNNING, STOPPED, KILLED, STALE
        )
        self.rng.shuffle(boxes)
        jobs: list[Callable[[], object]] = []
        if len([b for b in self.boxes if b.root == DEFAULT and b.state != GONE]) < (
            self.s.max_default + self.s.max_loops
        ):
            nets = self._networks(DEFAULT)  # chosen here: the rng is never used in threads
            until = self.rng.randint(5, 25)
            jobs.append(lambda: self.op_run(DEFAULT, nets=nets, until=until))
        for box in boxes[: self.rng.randint(1, 3)]:
            if box.state == RUNNING:
                verb = self.rng.choice(("stop", "stop", "rm"))
            else:
                verb = self.rng.choice(("start", "start", "rm"))
            job = {"stop": self.op_stop, "start": self.op_start, "rm": self.op_rm}[verb]
            jobs.append(functools.partial(job, box))
        self.result.operations["burst"] += 1
        with ThreadPoolExecutor(len(jobs)) as pool:
            for future in [pool.submit(job) for job in jobs]:
                future.result()

    def op_api_restart(self) -> None:
        """podman's API service goes away for one operation (the daemon is blind: it
        must release nothing meanwhile), then comes back (the daemon resyncs)."""
        self.sb.stop_podman_service()
        self.result.operations["api-restart"] += 1
        try:
            running = self._pick([b for b in self._boxes(DEFAULT) if not b.loop], RUNNING)
            if running and self.rng.random() < 0.5:
                self.op_stop(self.rng.choice(running))
            else:
                self.op_run(DEFAULT)
        finally:
            self.sb.start_podman_service()

    def op_net(self) -> None:
        """The scratch network removed with its containers, or created with one on it."""
        if self._scratch_exists():
            on = [b for b in self._boxes(DEFAULT) if SCRATCH in b.nets]
            res = self.podman("net-rm", "network", "rm", "-f", "--time", "0", SCRATCH)
            ended = time.time()
            if res.returncode == 0:
                self.net_life.append((ended, False))
                self._gone_with_network(SCRATCH)
                for box in on:
                    self._set(box, GONE, DEAD, ended)
            for box in on:
                self._resync(box)
            return
        self._net_create()
        ip = self._static(SCRATCH) if self.rng.random() < 0.5 else None
        self.op_run(DEFAULT, nets={SCRATCH: ip})

    def _gone_with_network(self, net: str) -> None:
        """Planted leaks on a removed network: podman >= 5.0.2 deletes its bucket,
        4.3 leaves it (an orphan-network finding, released as a whole)."""
        for plant in self.planted.values():
            on = {a for a in plant.left if a[0] == net}
            if not on:
                continue
            plant.left -= on
            if not plant.left and plant.healed_at is None:
                plant.vanished = True
                self.result.vanished += 1

    def _net_create(self, *, count: bool = True) -> None:
        subnet, dynamic = SCRATCH_SUBNET
        began = time.time()
        self.net_life.append((began, True))
        args = ("network", "create", "--subnet", subnet, "--ip-range", dynamic, SCRATCH)
        res = self.podman("net-create", *args) if count else self.sb.podman(*args, check=False)
        if res.returncode != 0:
            self.net_life.append((time.time(), False))

    def _scratch_exists(self) -> bool:
        return bool(self.net_life) and self.net_life[-1][1]

    def op_plant(self, how: str) -> None:
        """A real leak through podman's error path: its write of ipam.db fails (EIO).

        ``rm``: the container is removed anyway (leaked); ``stop``: it stays, exited and
        torn down, holding its addresses (stale; static addresses only, so that a start
        before the heal is refused instead of allocating next to the leftover).
        """
        for _attempt in range(3):
            nets = self._networks(DEFAULT)
            if how == "stop":
                nets = {n: ip or self._static(n) for n, ip in nets.items()}
                if not all(nets.values()):
                    return
            box = self.op_run(DEFAULT, nets=nets, op="plant-run")
            if box is None:
                continue
            seen = self._inspect_one(box)
            addresses = set(seen.ips.items()) if seen else set()
            self.result.plants[f"{how} attempts"] += 1
            trace = self.sb.host_path(PLANT_TRACE)
            trace.unlink(missing_ok=True)
            strace = (
                "strace", "-f", "-qq", "-ttt", "-o", PLANT_TRACE, "-P", IPAM_DB,
                "-e", "trace=pwrite64", "-e", "inject=pwrite64:error=EIO",
            )  # fmt: skip
            verb = ("rm", "-f") if how == "rm" else ("stop",)
            with self._cleanup_fails(box):  # podman's own process tears down, not conmon's
                res = self.podman(
                    f"plant-{how}", *verb, "-t", "0", box.name, plant=True, wrap=strace
                )
            ended = time.time()
            if not TEARDOWN_FAILED.search(res.stderr):  # the teardown ran elsewhere
                self.result.plants[f"{how} missed"] += 1
                self._resync(box)
                continue
            # dead from the write that failed on: a release before it would be a wrong one
            failed_at = _injected_at(trace) or ended
            self._mark(box.cid, failed_at, PLANTED)
            self.planted[box.cid] = Plant(box.cid, how, ended, addresses, set(addresses))
            self.result.planted += 1
            self.result.plants[f"{how} planted"] += 1
            seen = self._inspect_one(box)
            if how == "rm":
                box.state = GONE
                if seen is not None:
                    self._fail(f"plant rm: {box.name} still exists after its removal")
                self.bait += [(n, ip) for n, ip in box.nets.items() if ip]
            else:
                box.state = STALE
                if seen is None or seen.live:
                    status = "gone" if seen is None else seen.status
                    self._fail(f"plant stop: {box.name} is {status}, not exited and torn down")
            self._mark(box.cid, ended, PLANTED)
            return

    def op_restore(self) -> None:
        """``ipamguard restore --yes`` of one of the newest backups, with an operation
        running meanwhile."""
        listed = self.sb.ipamguard("backups", "--json", "--backup-dir", BACKUP_DIR, check=False)
        try:
            backups = json.loads(listed.stdout) if listed.returncode == 0 else []
        except ValueError:
            backups = []
        kind = self.rng.choice(("copy", "record"))
        backups = [b for b in backups if b.get("kind", "copy") == kind]
        if not backups:
            self.result.restores[f"{kind}: none yet"] += 1
            self._do(self._choose_not_restore())
            return
        backup = self.rng.choice(backups[-3:])
        began = time.time()
        proc = self.sb.ipamguard_popen(
            "restore", backup["path"], "--yes", "--json", "--backup-dir", BACKUP_DIR,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            self._do(self._choose_not_restore())
        finally:
            try:
                out, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                self.sb.signal(proc, signal.SIGKILL)
                out, err = proc.communicate()
                self._fail("restore: hung for 120 s")
        ended = time.time()
        self.result.operations["restore"] += 1
        self.history.append(
            f"c{self.cycle} {began:.3f}+{ended - began:.2f}s restore {kind} "
            f"{os.path.basename(backup['path'])} -> {proc.returncode} {_first_line(err)}"
        )
        if "Traceback" in err:
            self._fail(f"restore: a traceback: {err.strip()[-400:]}")
        if proc.returncode == 1:
            self.result.restores[f"{kind}: nothing differs"] += 1
            return
        if proc.returncode != 0:
            self.result.restores[f"{kind}: refused, {_restore_reason(err)}"] += 1
            return
        try:
            doc = json.loads(out)
        except ValueError:
            self._fail(f"restore: rc 0 without JSON: {out[:200]!r}")
            return
        self.result.restores[f"{kind}: applied" if doc.get("written") else f"{kind}: rc 0"] += 1
        for allocation in doc.get("removed", []):
            cid = allocation["container_id"]
            plant = self.planted.get(cid)
            if plant is not None and plant.healed_at is None and not plant.vanished:
                plant.left.discard((allocation["network"], allocation["ip"]))
                if not plant.left:  # the restore took the planted leak away
                    plant.vanished = True
                    self.result.vanished += 1
            if LIVE in (self._state_at(cid, began), self._state_at(cid, ended)):
                self._fail(
                    f"restore took {allocation['ip']} ({allocation['network']}) from "
                    f"{cid[:12]}, live during the restore"
                )
        by_cid = {b.cid: b for b in self.boxes if b.cid}
        for allocation in doc.get("added", []):
            cid, net, ip = allocation["container_id"], allocation["network"], allocation["ip"]
            self.history.append(f"c{self.cycle} {ended:.3f} restore added {net} {ip} {cid[:12]}")
            box = by_cid.get(cid)
            seen = self._inspect_one(box) if box and self._state_at(cid, ended) == LIVE else None
            if seen is not None and seen.live and seen.ips.get(net) == ip:
                # a record of what this container holds again now: nothing put back
                self.result.restores[f"{kind}: listed as put back, held by it already"] += 1
                continue
            self.restore_planted.add(cid)  # a leak of the restore's making, for the daemon
            if seen is not None and seen.live:
                self.result.restores[f"{kind}: put back for a live container not using it"] += 1
                self.result.anomalies.append(
                    f"c{self.cycle}: restore put {ip} ({net}) back for live {cid[:12]} "
                    f"({box.name if box else '?'}), which no longer uses it"
                )

    def _choose_not_restore(self) -> str:
        while True:
            kind = self._choose()
            if kind != "restore":
                return kind

    # ------------------------------------------------------------------ the second API

    def start_alt_service(self) -> None:
        if self.alt_service is not None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.sb.host_path(ALT_SOCKET).unlink()
        self.alt_service = self.sb.popen(
            "podman", "system", "service", "--time=0", ALT_URL, env=ALT_ENV,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.alt_until = self.cycle + self.rng.randint(1, 4)
        self.result.operations["remote-service"] += 1
        _wait("the second API service", lambda: self.sb.host_path(ALT_SOCKET).exists(), 30)
        time.sleep(0.2)

    def stop_alt_service(self) -> None:
        proc, self.alt_service = self.alt_service, None
        if proc is None:
            return
        self.sb.signal(proc, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            self.sb.signal(proc, signal.SIGKILL)
            proc.wait(10)

    # ------------------------------------------------------------------ the model

    def _mark(self, cid: str, at: float, state: str) -> None:
        if not cid:
            return
        with self.lock:
            bisect.insort(self.life.setdefault(cid, []), (at, state), key=lambda e: e[0])

    def _set(self, box: Box, state: str, life: str, at: float) -> None:
        box.state = state
        self._mark(box.cid, at, life)

    def _state_at(self, cid: str, at: float) -> str | None:
        state = None
        for when, what in self.life.get(cid, ()):
            if when > at:
                break
            state = what
        return state

    def _resync(self, box: Box) -> None:
        """The box's state as podman says it (after an operation that failed), marked."""
        seen = self._inspect_one(box)
        now = time.time()
        if seen is None:
            box.state = GONE
        elif seen.status == PAUSED:
            box.state = PAUSED
        elif seen.status in LIVE_STATUSES:
            box.state = RUNNING
            box.ips = dict(seen.ips) or box.ips
        elif seen.sandbox:
            box.state = KILLED
        elif box.state != STALE:
            box.state = STOPPED
        if box.state in (RUNNING, KILLED, PAUSED):
            self._mark(box.cid, now, LIVE)
        else:
            self._mark(box.cid, now, PLANTED if box.cid in self.planted else DEAD)

    # ------------------------------------------------------------------ podman's view

    def _inspect_api(self, ref: str) -> dict[str, Any] | None:
        for attempt in range(3):
            status, body = self.sb.api_get(f"/v4.0.0/libpod/containers/{ref}/json")
            if status == 200:
                doc: dict[str, Any] = json.loads(body)
                return doc
            if status == 404:
                return None
            time.sleep(0.05 * (attempt + 1))
        raise AssertionError(f"podman's API: inspect {ref}: HTTP {status}: {body[:200]!r}")

    def _inspect_cli(self, root: str, names: list[str]) -> list[dict[str, Any]]:
        env = ALT_ENV if root == ALT else None
        res = self.sb.run("podman", "inspect", "--format", "json", *names, check=False, env=env)
        text = res.stdout.strip()
        docs: list[dict[str, Any]] = json.loads(text) if text.startswith("[") else []
        return docs

    def _inspect_one(self, box: Box) -> Seen | None:
        if box.root == DEFAULT:
            try:
                doc = self._inspect_api(box.cid or box.name)
                return _seen(doc, DEFAULT) if doc else None
            except OSError:  # the API service is down (the api-restart operation)
                pass
        docs = self._inspect_cli(box.root, [box.cid or box.name])
        return _seen(docs[0], box.root) if docs else None

    def _conmon_pid(self, box: Box) -> int:
        doc = self._inspect_api(box.cid) if box.root == DEFAULT else None
        return int(doc["State"]["ConmonPid"]) if doc else 0

    def _view(self) -> dict[str, Seen]:
        """Every container of both roots, as podman inspects it."""
        status, body = self.sb.api_get("/v4.0.0/libpod/containers/json?all=true")
        if status != 200:
            time.sleep(0.1)
            status, body = self.sb.api_get("/v4.0.0/libpod/containers/json?all=true")
        assert status == 200, f"podman's API: list: HTTP {status}: {body[:200]!r}"
        view = {}
        for entry in json.loads(body):
            doc = self._inspect_api(entry["Id"])
            if doc is not None:
                seen = _seen(doc, DEFAULT)
                view[seen.cid] = seen
        names = [b.name for b in self._boxes(ALT)]
        if names:
            for doc in self._inspect_cli(ALT, names):
                seen = _seen(doc, ALT)
                view[seen.cid] = seen
        return view

    def _dump(self) -> dict[str, Any]:
        """Go's reading of ipam.db (none yet before the first allocation: empty)."""
        db = self.sb.host_path(IPAM_DB)
        if not db.exists():
            return {"networks": []}
        return self.oracle.ipam_dump(db)

    def _held(self) -> dict[tuple[str, str], str]:
        return held_of(self._dump())

    # ------------------------------------------------------------------ invariants

    def check(self, *, final: bool = False) -> None:
        view = self._view()
        db = self.sb.host_path(IPAM_DB)
        dump = self._dump()
        errors = self.oracle.check(db) if db.exists() else []
        loopers = [b for b in self.boxes if b.loop and b.state != GONE]
        loops = {b.cid for b in loopers}
        again = {}
        for box in loopers:
            if box.cid in view and (seen := self._inspect_one(box)) is not None:
                again[box.cid] = seen
        held = held_of(dump)
        ids = {
            (n["name"], e["container_id"]): set(e["ips"] or ())
            for n in dump["networks"]
            for e in n["ids"]
        }
        self.last_held = held
        where = "final" if final else f"cycle {self.cycle}"
        if errors:
            self._fail(f"{where}: Go's bbolt check: {'; '.join(errors[:5])}")
        by_cid = {b.cid: b for b in self.boxes if b.cid}
        owners: dict[tuple[str, str], str] = {}
        for cid, seen in view.items():
            if cid in loops and (cid not in again or again[cid].fingerprint != seen.fingerprint):
                self.result.unstable_skipped += 1
                continue
            if not seen.live:
                continue
            box = by_cid.get(cid)
            ips = seen.ips or (box.ips if box else {})
            if box is not None and seen.ips:
                box.ips = dict(seen.ips)
            for net, ip in ips.items():
                holder = held.get((net, ip))
                if holder != cid:
                    self._fail(
                        f"{where}: {seen.name} ({seen.root} root, {seen.status}, network set up) "
                        f"has {ip} on {net}; ipam.db gives it to "
                        f"{holder[:12] if holder else 'nobody'}"
                    )
                elif ip not in ids.get((net, cid), set()):
                    self._fail(f"{where}: {seen.name}: {ip} on {net} has no ids entry")
                other = owners.setdefault((net, ip), cid)
                if other != cid:
                    self._fail(f"{where}: {ip} on {net} used by {other[:12]} and {cid[:12]}")
        self._read_journal()
        self._account_plants(held)
        live = {cid for cid, s in view.items() if s.live}
        live |= {cid for cid, s in again.items() if s.live}
        live |= loops - set(again)  # a crash loop that could not be seen twice: no verdict
        left = {f"{n} {ip}": cid for (n, ip), cid in held.items() if cid not in live}
        self.result.leaks_left = left

    def _account_plants(self, held: dict[tuple[str, str], str]) -> None:
        for plant in self.planted.values():
            if plant.healed_at is not None or plant.vanished:
                continue
            if not plant.left:
                continue
            still = {a for a in plant.left if held.get(a) == plant.cid}
            plant.missing = 0 if still else plant.missing + 1
            if plant.missing >= 2:  # gone from ipam.db, no release logged: a restore took it
                plant.vanished = True
                self.result.vanished += 1
                self._fail(
                    f"c{self.cycle}: planted leak {plant.cid[:12]} left ipam.db without a "
                    "LEAK_RELEASED entry"
                )

    def _read_journal(self) -> None:
        args = ["--after-cursor", self.cursor] if self.cursor else []
        entries = self.sb.journal_entries(*args, *(f"MESSAGE_ID={m}" for m in JOURNAL_IDS))
        for entry in entries:
            self.cursor = entry.get("__CURSOR", self.cursor)
            kind = JOURNAL_IDS.get(entry.get("MESSAGE_ID", ""), "other")
            self.result.journal[kind] += 1
            if kind == "released":
                self._judge_release(entry)
            elif kind == "refused":
                reason = str(entry.get("IPAMGUARD_REASON") or entry.get("MESSAGE", ""))
                self.result.daemon_refusals[_refusal_reason(reason)] += 1
            elif kind == "db-unreadable":
                self._fail(f"cycle {self.cycle}: the daemon logged {kind}: {entry.get('MESSAGE')}")
            elif kind == "lock-timeout":
                self.result.anomalies.append(f"c{self.cycle}: lock timeout: {entry.get('MESSAGE')}")

    def _judge_release(self, entry: dict[str, Any]) -> None:
        at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        finding = entry.get("IPAMGUARD_FINDING", "")
        cid = entry.get("IPAMGUARD_CONTAINER_ID") or ""
        net, ip = entry.get("IPAMGUARD_NETWORK", ""), entry.get("IPAMGUARD_IP", "")
        what = f"c{self.cycle}: {finding} {net} {ip or ''} {cid[:12]} at {at:.3f}"
        if not cid:  # an orphan network's bucket
            exists = [self._scratch_at(at - SLACK), self._scratch_at(at)]
            if net == SCRATCH and not any(exists):
                self.result.releases["orphan network (removed)"] += 1
            else:
                self.result.releases["orphan network while it existed"] += 1
                self.result.anomalies.append(f"{what}: the network existed")
            return
        before, now = self._state_at(cid, at - SLACK), self._state_at(cid, at)
        if before == LIVE and now == LIVE:
            self.result.releases[WRONG] += 1
            box = next((b for b in self.boxes if b.cid == cid), None)
            line = f"{what}: live ({box.name if box else '?'}, {finding})"
            self.result.wrong_releases.append(line)
            self._fail(f"{WRONG}: {line}\n" + self._history_near(at))
            return
        if cid not in self.life:
            self.result.releases["unknown container"] += 1
            self.result.anomalies.append(f"{what}: a container the churn never made")
            return
        if LIVE in (before, now) or STARTING in (before, now) or None in (before, now):
            self.result.anomalies.append(f"{what}: {before} -> {now} within {SLACK} s")
        plant = self.planted.get(cid)
        if plant is not None and (net, ip) in plant.left:
            plant.left.discard((net, ip))
            if not plant.left and plant.healed_at is None:
                plant.healed_at = at
                self.result.healed += 1
                self.result.heal_seconds.append(max(at - plant.at, 0.0))
            self.result.releases[f"planted leak ({plant.how})"] += 1
        elif cid in self.restore_planted:
            self.result.releases["put back by a restore"] += 1
        else:
            self.result.releases["not planted (podman's own leak)"] += 1
            self.result.anomalies.append(f"{what}: released, never planted")

    def _scratch_at(self, at: float) -> bool:
        exists = False
        for when, state in self.net_life:
            if when > at:
                break
            exists = state
        return exists

    def _history_near(self, at: float, before: float = 5.0) -> str:
        lines = [h for h in self.history if _history_time(h) >= at - before][-12:]
        return "\n".join("    " + line for line in lines)

    def _fail(self, message: str) -> None:
        with self.lock:
            if message in self.result.failures:
                return
            self.result.failures.append(message)
        self.log("FAIL " + message.splitlines()[0])

    # ------------------------------------------------------------------ the end

    def finish(self) -> None:
        """The second API service stopped; the last leaks healed within settle_seconds."""
        self.stop_alt_service()
        deadline = time.monotonic() + self.s.settle_seconds
        time.sleep(min(3.0, self.s.settle_seconds))
        while True:
            self.check(final=True)
            if not self.result.leaks_left or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        r = self.result
        if r.leaks_left:
            left = ", ".join(f"{k} ({v[:12]})" for k, v in sorted(r.leaks_left.items()))
            self._fail(f"final: {len(r.leaks_left)} leaks left: {left}")
        unhealed = [p for p in self.planted.values() if p.healed_at is None and not p.vanished]
        for plant in unhealed:
            held = {a for a in plant.left if self.last_held.get(a) == plant.cid}
            if held:
                self._fail(f"final: planted leak {plant.cid[:12]} not healed: {sorted(held)}")
        if self.daemon is not None and self.daemon.poll() is not None:
            self._fail(f"final: the daemon exited (rc={self.daemon.returncode})")
        else:
            r.rss_kb["end"] = self._rss()
            r.cpu_seconds = _cpu_seconds(self.daemon_pid) - self._cpu0
            mark = f"cycle {self.s.rss_cycle}"
            if mark in r.rss_kb:
                growth = (r.rss_kb["end"] - r.rss_kb[mark]) / 1024
                if growth > self.s.rss_growth_limit_mb:
                    self._fail(
                        f"final: the daemon's RSS grew {growth:.1f} MB after {mark} "
                        f"(limit {self.s.rss_growth_limit_mb} MB)"
                    )

    def self_test(self) -> list[str]:
        """Do the checks catch what they look for? What they missed (after ``run``).

        With the daemon stopped: a live container's address released behind podman's
        back (Go's bbolt does podman's own dealloc), and a LEAK_RELEASED entry naming
        a live container, must each be a failure. The result is left as it was.
        """
        r = self.result
        saved = (list(r.failures), list(r.wrong_releases), Counter(r.releases))
        missed = []
        try:
            box = self.op_run(DEFAULT, nets={"churn-a": None}, op="self-test")
            seen = self._inspect_one(box) if box else None
            if box is None or seen is None or "churn-a" not in seen.ips:
                return ["self-test: could not run a container"]
            ip = seen.ips["churn-a"]
            time.sleep(SLACK * 2)
            self.oracle.ipam_release(self.sb.host_path(IPAM_DB), box.cid)
            self.check(final=True)
            if not any(box.name in f and "nobody" in f for f in r.failures):
                missed.append(f"a live container's address released: {r.failures[-3:]}")
            self.sb.journal_send(
                f"released leaked churn-a {ip} (self-test)",
                MESSAGE_ID=messages.LEAK_RELEASED, IPAMGUARD_CONTAINER_ID=box.cid,
                IPAMGUARD_NETWORK="churn-a", IPAMGUARD_IP=ip, IPAMGUARD_FINDING="leaked",
            )  # fmt: skip
            self.check(final=True)
            if not any(box.cid[:12] in w for w in r.wrong_releases):
                missed.append(f"a LEAK_RELEASED entry of a live container: {r.releases}")
        finally:
            r.failures, r.wrong_releases, r.releases = saved
        return missed

    def _rss(self) -> int:
        for line in Path(f"/proc/{self.daemon_pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def _daemon_stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self.sb.host_path(DAEMON_STDERR).read_text(errors="replace")[-2000:]
        return ""


# --------------------------------------------------------------------------- helpers


def run_churn(
    sb: Sandbox, oracle: Oracle, settings: ChurnSettings, log: Callable[[str], None] | None = None
) -> ChurnResult:
    return Churn(sb, oracle, settings, log).run()


def _seen(doc: dict[str, Any], root: str) -> Seen:
    state = doc.get("State") or {}
    settings = doc.get("NetworkSettings") or {}
    ips = {
        net: info["IPAddress"]
        for net, info in (settings.get("Networks") or {}).items()
        if isinstance(info, dict) and info.get("IPAddress")
    }
    return Seen(
        cid=doc["Id"],
        name=str(doc.get("Name", "")).lstrip("/"),
        root=root,
        status=str(state.get("Status", "")),
        sandbox=str(settings.get("SandboxKey") or ""),
        ips=ips,
        restarts=int(doc.get("RestartCount") or 0),
        started=str(state.get("StartedAt", "")),
        pid=int(state.get("Pid") or 0),
    )


def _child_pid(pid: int) -> int:
    """The host pid of what nsenter (``pid``) runs inside the sandbox."""
    for _ in range(200):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("the daemon's process was not found")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _traced(sb: Sandbox, pid: str) -> bool:
    try:
        status = sb.host_path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone: nothing to wait for
    return "TracerPid:\t0" not in status


def _injected_at(trace: Path) -> float | None:
    """When strace (-ttt) injected its first error: the moment the teardown failed."""
    with contextlib.suppress(OSError):
        for line in trace.read_text(errors="replace").splitlines():
            if "(INJECTED)" in line:
                with contextlib.suppress(ValueError, IndexError):
                    return float(line.split()[1])
    return None


def _wait(what: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _first_line(text: str, limit: int = 160) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


_IDS = re.compile(r"\b[0-9a-f]{12,64}\b")
_ADDRESSES = re.compile(r"\b\d+\.\d+\.\d+\.\d+(/\d+)?\b")
_NUMBERS = re.compile(r"\b\d+(\.\d+)?\b")


def _generic(text: str) -> str:
    text = _IDS.sub("ID", text)
    text = _ADDRESSES.sub("IP", text)
    return _NUMBERS.sub("N", text)


def _normalize(stderr: str) -> str:
    line = _first_line(stderr, 400)
    line = re.sub(r'^time="[^"]*" level=\w+ msg="', "", line)
    line = line.removeprefix("Error: ")
    return _generic(line)[:100] or "(no message)"


def _refusal_reason(reason: str) -> str:
    """The daemon's refusal reason without IDs and addresses, in a few words."""
    text = _generic(reason)
    for marker in (" (", ": "):
        head, sep, _ = text.partition(marker)
        if sep and len(head) > 8:
            text = head
            break
    return text[:80]


def _restore_reason(stderr: str) -> str:
    line = _first_line(stderr, 400).removeprefix("ipamguard: error: ")
    known = (
        ("take addresses from live containers", "a live container's address"),
        ("changed since it was judged", "ipam.db changed meanwhile"),
        ("cannot tell which containers live", "liveness incomplete"),
        ("in use on the network", "an address answers on its network"),
        ("lock", "a lock"),
    )
    for needle, reason in known:
        if needle in line:
            return reason
    return _generic(line)[:80]


def _history_time(line: str) -> float:
    with contextlib.suppress(ValueError, IndexError):
        return float(line.split()[1].split("+")[0])
    return 0.0
