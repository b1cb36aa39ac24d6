"""The daemon's state on disk: a status file for ``ipamguard status``, and counters.

- ``/run/ipamguard/state.json`` (``--user``: ``$XDG_RUNTIME_DIR/ipamguard/``; under
  systemd ``$RUNTIME_DIRECTORY``, the unit's RuntimeDirectory=): rewritten
  atomically after every reconcile, mode 0644 so that ``ipamguard status`` reads it
  without privileges and without talking to the daemon. /run is cleared at boot,
  and systemd removes the directory when the service stops: no file, no daemon.
- ``/var/lib/ipamguard/counters.json`` (``--user``: ``$XDG_STATE_HOME/ipamguard/``;
  under systemd ``$STATE_DIRECTORY``): the counters of releases and refusals,
  which Prometheus expects never to go down. They live beside the backups rather
  than in /run so that a reboot does not reset them either; written (and synced)
  only when they change, i.e. after a release or a refusal.

The status file's keys (``version`` 1): pid, pid_start (the process's start time
in clock ticks, /proc/PID/stat, against a reused pid), started_at, updated_at,
running, user, config, db, podman_url, repair_enabled, resync_seconds,
subnet_free_percent, podman_reachable, cycles, last_cycle (reason, started_at,
finished_at, seconds, ok, error, summary, networks, allocations, open_findings,
repaired, findings/released/refused per kind or reason), last_success_at,
low_subnets, metrics (textfile, written_at, error), counters (releases, refusals).
Times are Unix times (seconds).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATE_VERSION = 1
STATE_FILE = "state.json"
COUNTERS_FILE = "counters.json"
SYSTEM_RUNTIME_DIR = "/run/ipamguard"
SYSTEM_STATE_DIR = "/var/lib/ipamguard"
STATE_MODE = 0o644  # world-readable: status needs no privileges (no container IDs in it)
COUNTERS_MODE = 0o600


def runtime_dir(user: bool, env: Mapping[str, str] | None = None) -> str:
    """Where the status file of the root daemon (or the user's) lives."""
    if not user:
        return SYSTEM_RUNTIME_DIR
    env = os.environ if env is None else env
    base = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return os.path.join(base, "ipamguard")


def state_dir(user: bool, env: Mapping[str, str] | None = None) -> str:
    """Where the persistent counters live (beside the backups)."""
    if not user:
        return SYSTEM_STATE_DIR
    env = os.environ if env is None else env
    home = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(home, "ipamguard")


def state_path(user: bool, env: Mapping[str, str] | None = None) -> str:
    """The status file that ``ipamguard status`` reads."""
    return os.path.join(runtime_dir(user, env), STATE_FILE)


def daemon_paths(user: bool, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(status file, counters file) of a daemon: systemd's $RUNTIME_DIRECTORY and
    $STATE_DIRECTORY where set (the unit's RuntimeDirectory=/StateDirectory=), else
    the defaults of the mode."""
    env = os.environ if env is None else env
    runtime = _first(env.get("RUNTIME_DIRECTORY")) or runtime_dir(user, env)
    state = _first(env.get("STATE_DIRECTORY")) or state_dir(user, env)
    return os.path.join(runtime, STATE_FILE), os.path.join(state, COUNTERS_FILE)


def _first(paths: str | None) -> str | None:
    return paths.split(":")[0] if paths else None


# ----------------------------------------------------------------------- files


def write_atomically(path: str, data: bytes, mode: int, sync: bool = False) -> None:
    """A temporary file beside ``path`` (``.NAME.*.tmp``) with ``mode`` whatever the
    umask, then a rename: a reader sees the old file or the new one, never a part.
    ``sync``: fsync the file before the rename (it survives a crash). OSError on
    failure, with ``path`` left as it was and no temporary file left behind."""
    directory, name = os.path.split(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            if sync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def ensure_dir(path: str, mode: int) -> None:
    """Create ``path`` (and its parents) if missing; a new directory gets ``mode``."""
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)


def write_state(path: str, document: Mapping[str, Any]) -> None:
    """Replace the status file (its directory is created 0755 if missing)."""
    ensure_dir(os.path.dirname(path), 0o755)
    data = json.dumps(document, sort_keys=True).encode() + b"\n"
    write_atomically(path, data, STATE_MODE)


class StateUnreadable(Exception):
    """The status file exists but cannot be read or is not a status document."""


def read_state(path: str) -> dict[str, Any] | None:
    """The status document, None if there is no file (StateUnreadable otherwise)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateUnreadable(f"{path}: cannot read: {error.strerror}") from None
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise StateUnreadable(f"{path}: not JSON") from None
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise StateUnreadable(f"{path}: not a status file of version {STATE_VERSION}")
    return document


# ----------------------------------------------------------------------- counters


@dataclass
class Counters:
    """Totals since the counters file was first written (they only go up)."""

    releases: dict[str, float] = field(default_factory=dict)  # kind -> findings released
    refusals: dict[str, float] = field(default_factory=dict)  # reason -> releases refused
    lock_hold_seconds: float | None = None  # the last write's

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "releases": dict(sorted(self.releases.items())),
            "refusals": dict(sorted(self.refusals.items())),
            "lock_hold_seconds": self.lock_hold_seconds,
        }


def load_counters(path: str) -> tuple[Counters, str | None]:
    """The saved counters, or zeros and why (None: no file yet, nothing to say)."""
    try:
        with open(path, "rb") as file:
            document = json.loads(file.read())
    except FileNotFoundError:
        return Counters(), None
    except OSError as error:
        return Counters(), f"{path}: cannot read: {error.strerror}"
    except (ValueError, UnicodeDecodeError):
        return Counters(), f"{path}: not JSON"
    try:
        return _counters_from(document), None
    except ValueError as error:
        return Counters(), f"{path}: {error}"


def _counters_from(document: Any) -> Counters:
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise ValueError(f"not a counters file of version {STATE_VERSION}")
    hold = document.get("lock_hold_seconds")
    if hold is not None and not _count(hold):
        raise ValueError("lock_hold_seconds is not a non-negative number")
    return Counters(_totals(document.get("releases")), _totals(document.get("refusals")), hold)


def _totals(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _count(v) for k, v in value.items()
    ):
        raise ValueError("counters are not names with non-negative numbers")
    return {k: float(v) for k, v in value.items()}


def _count(value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value >= 0


def save_counters(path: str, counters: Counters) -> None:
    """Replace the counters file, synced (its directory is created 0700 if missing)."""
    ensure_dir(os.path.dirname(path), 0o700)
    data = json.dumps(counters.to_json()).encode() + b"\n"
    write_atomically(path, data, COUNTERS_MODE, sync=True)


# ----------------------------------------------------------------------- processes


def process_start(pid: int, proc: str = "/proc") -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (None: no such
    process, or /proc does not show it)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: count from the last ")"
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of proc(5)
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, start: int | None, proc: str = "/proc") -> bool:
    """Does the process that wrote the status file still run (not a reused pid)?"""
    if pid <= 0:
        return False
    now = process_start(pid, proc)
    if now is not None:
        return start is None or now == start
    try:
        os.kill(pid, 0)  # /proc hidden (hidepid=): ask the kernel
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True
