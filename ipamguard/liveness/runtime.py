"""Liveness from the OCI runtimes' state directories and from conmon processes.

Both see containers of every libpod instance on the host (any ``--root``), and
``buildah run`` / ``podman build`` RUN containers, which podman's API does not list
as running. Both take their root paths as parameters (tests use temp dirs).

Layouts (rootful; checked on runc 1.1.5, conmon 2.1.6, podman 4.3.1, buildah 1.28):

- runc: ``/run/runc/ID/state.json`` with ``init_process_pid`` and
  ``init_process_start`` (field 22 of /proc/PID/stat, clock ticks since boot).
  podman names the entry by the container's 64-hex ID; buildah (``buildah run``,
  ``podman build``) by ``buildah-buildahNNN``, which is also the ID it allocates
  addresses under in ipam.db.
- crun: ``/run/crun/ID/status`` with ``pid`` and ``process-start-time`` (same
  field 22); hidden entries (``.empty-directory``) are not containers. Taken from
  crun's source: crun cannot run on the machines this was checked on.
- youki: ``/run/youki/ID/state.json`` with ``pid``; not checked against a real youki.
- conmon: podman 4.3 starts ``/usr/bin/conmon --api-version 1 -c ID -u ID -r RUNTIME
  ... -n NAME ...``; exec sessions add ``-e`` with the same ``-c ID``.

PIDs are only meaningful in the pid namespace of the runtime: run this where podman
runs, with ``proc`` that namespace's /proc.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness.model import RUNNING, STOPPED, UNKNOWN, ContainerInfo

RUNTIME_STATE_DIRS = ("/run/runc", "/run/crun", "/run/youki")
STATE_FILES = ("state.json", "status")  # runc and youki; crun
PID_KEYS = ("init_process_pid", "pid")  # runc; crun and youki
START_KEYS = ("init_process_start", "process-start-time")  # runc; crun


def os_reason(error: OSError) -> str:
    """``permission denied``, ``no such file or directory``, ... (no path, no errno)."""
    if error.strerror:
        return error.strerror[:1].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


class RuntimeStateSource:
    """Containers that an OCI runtime (runc, crun, youki) has state for.

    A missing state directory means no containers of that runtime; an unreadable
    directory, state file or /proc/PID/stat makes the source fail (blind is not
    "stopped"). ContainerInfo.source is the directory's name ("runc"); state is
    "running" if the recorded init process is alive (and has the recorded start
    time), "stopped" if not, "unknown" if the entry has no state file or no pid in
    it (e.g. the runtime is still writing it): known, but not known to run.
    """

    name = "runtime-state"

    def __init__(self, dirs: tuple[str, ...] = RUNTIME_STATE_DIRS, proc: str = "/proc") -> None:
        self.dirs = dirs
        self.proc = proc

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        only = getattr(holders, "only", None)  # a focused look: these containers alone
        out: list[ContainerInfo] = []
        for state_dir in self.dirs:
            out += self._scan(Path(state_dir), only)
        return out

    def _scan(self, state_dir: Path, only: Collection[str] | None) -> list[ContainerInfo]:
        runtime = state_dir.name
        try:
            names = sorted(os.listdir(state_dir)) if only is None else sorted(only)
            if only is not None and not state_dir.is_dir():
                return []
        except FileNotFoundError:
            return []
        except OSError as e:
            raise SourceUnavailable(f"{runtime} state: {state_dir}: {os_reason(e)}") from None
        out = []
        for name in names:
            entry = state_dir / name
            if name.startswith(".") or "/" in name or not entry.is_dir() or entry.is_symlink():
                continue
            try:
                state = self._entry_state(entry)
            except OSError as e:  # the state file or /proc/PID/stat is unreadable
                where = e.filename or entry
                raise SourceUnavailable(f"{runtime} state: {where}: {os_reason(e)}") from None
            if state is not None:
                out.append(ContainerInfo(name, state, runtime))
        return out

    def _entry_state(self, entry: Path) -> str | None:
        """running / stopped / unknown, or None if the entry vanished meanwhile."""
        for file_name in STATE_FILES:
            try:
                raw = (entry / file_name).read_bytes()
            except FileNotFoundError:
                continue
            pid, start = _parse_state(raw)
            if pid is None:
                return UNKNOWN
            return RUNNING if process_alive(self.proc, pid, start) else STOPPED
        return UNKNOWN if entry.is_dir() else None


def _parse_state(raw: bytes) -> tuple[int | None, int | None]:
    """(pid, start time or None) from a runtime's state file; (None, None) if unreadable."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    pid = _first_int(doc, PID_KEYS)
    if pid is None or pid <= 0:
        return None, None
    start = _first_int(doc, START_KEYS)
    return pid, start or None  # 0: not recorded


def _first_int(doc: dict[str, object], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def process_alive(proc: str, pid: int, start_time: int | None = None) -> bool:
    """True if pid exists, is not a zombie, and (if given) started at start_time.

    start_time is field 22 of /proc/PID/stat, as runc and crun record it: a pid
    reused by another process does not count.
    """
    try:
        stat = Path(proc, str(pid), "stat").read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = stat.rpartition(")")[2].split()  # fields[0] is field 3 (state)
    if len(fields) < 20 or fields[0] in ("Z", "X", "x"):
        return False
    return start_time is None or fields[19] == str(start_time)


class ConmonSource:
    """Containers whose conmon process runs (``conmon ... -c ID ...``).

    Sees containers of every storage root. state is always "running": conmon
    lives as long as its container (and exits right after it).
    """

    name = "conmon"

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        try:
            pids = [p for p in os.listdir(self.proc) if p.isdigit()]
        except OSError as e:
            raise SourceUnavailable(f"processes in {self.proc}: {os_reason(e)}") from None
        out = []
        for pid in sorted(pids, key=int):
            argv = self._cmdline(pid)
            if argv and os.path.basename(argv[0]) == "conmon":
                found = conmon_container(argv)
                if found is not None:
                    out.append(ContainerInfo(found[0], RUNNING, self.name, found[1]))
        return out

    def _cmdline(self, pid: str) -> list[str]:
        """argv of pid; [] for kernel threads, zombies and processes that are gone."""
        return proc_cmdline(self.proc, pid)


def proc_read(proc: str, pid: str, name: str) -> bytes | None:
    """/proc/PID/NAME, or None if the process is gone (a blind /proc raises one line)."""
    path = f"{proc}/{pid}/{name}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as e:  # e.g. /proc mounted with hidepid: blind, not empty
        raise SourceUnavailable(f"processes in {proc}: {path}: {os_reason(e)}") from None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except ProcessLookupError:
        return None
    except OSError as e:
        raise SourceUnavailable(f"processes in {proc}: {path}: {os_reason(e)}") from None
    finally:
        os.close(fd)


def proc_cmdline(proc: str, pid: str) -> list[str]:
    """argv of pid; [] for kernel threads, zombies and processes that are gone."""
    raw = (proc_read(proc, pid, "cmdline") or b"").rstrip(b"\0")
    return [a.decode(errors="replace") for a in raw.split(b"\0")] if raw else []


def conmon_container(argv: list[str]) -> tuple[str, str] | None:
    """(container ID, name) from conmon's argv (``-c``/``--cid``, ``-n``/``--name``)."""
    values: dict[str, str] = {}
    options = {"-c": "cid", "--cid": "cid", "-n": "name", "--name": "name"}
    args = iter(argv[1:])
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and key in ("--cid", "--name"):
            values.setdefault(options[key], value)
        elif arg in options:
            values.setdefault(options[arg], next(args, ""))
    cid = values.get("cid", "")
    return (cid, values.get("name", "")) if cid else None
