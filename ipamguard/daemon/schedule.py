"""When the next reconcile is due: debounced triggers, rechecks, the periodic resync.

Pure: the service passes the event loop's monotonic time in.

- Triggers are debounced: a reconcile is due once no trigger came for
  ``debounce`` seconds, but at most ``MAX_DELAY_FACTOR * debounce`` after the first
  one of a burst (steady churn must not postpone it forever).
- Triggers that arrive during a reconcile make exactly one more afterwards.
- A cycle may ask to run again after some seconds (a finding's grace period).
- A full resync is due ``resync`` seconds after the end of the last reconcile.

Each reconcile also gets a **focus**: the containers its triggers name. A reconcile
due only to podman's container events, ipam.db changes and rechecks may look at
those (and at what changed in ipam.db, and at what it found before) alone; one due to
a start, a resync, a reload or podman coming back (``focus`` None) looks at everything.
"""

from __future__ import annotations

from ipamguard.daemon.triggers import Trigger

MAX_DELAY_FACTOR = 10
# triggers after which a reconcile may look at what they name and what changed only
FOCUSED_KINDS = frozenset({"podman-event", "db-changed"})
MAX_REASONS = 3  # distinct trigger descriptions named in a reason


class Schedule:
    """The next reconcile's due time and reason; see the module docstring."""

    def __init__(self, debounce: float, resync: float, now: float) -> None:
        self.debounce = debounce
        self.resync = resync
        self._pending: list[Trigger] = []
        self._first = 0.0  # time of the first and last pending trigger
        self._last = 0.0
        self._requested: str | None = None
        self._last_end = now
        self._recheck_at: float | None = None
        self.focus: frozenset[str] | None = None  # of the reconcile ``take`` last returned

    def configure(self, debounce: float, resync: float) -> None:
        """New intervals (config reload); the resync counts from the last reconcile."""
        self.debounce = debounce
        self.resync = resync

    def add(self, now: float, trigger: Trigger) -> None:
        if not self._pending:
            self._first = now
        self._pending.append(trigger)
        self._last = now

    def request(self, reason: str) -> None:
        """A reconcile as soon as possible, without debounce (e.g. after a reload)."""
        self._requested = reason

    @property
    def pending(self) -> int:
        return len(self._pending)

    def due_at(self) -> float:
        """Monotonic time at which the next reconcile is due (maybe in the past)."""
        if self._requested is not None:
            return float("-inf")
        due = self._last_end + self.resync
        if self._recheck_at is not None:
            due = min(due, self._recheck_at)
        if self._pending:
            debounced = min(
                self._last + self.debounce, self._first + MAX_DELAY_FACTOR * self.debounce
            )
            due = min(due, debounced)
        return due

    def take(self, now: float) -> str | None:
        """The reason for a reconcile due at ``now`` (pending triggers are consumed), or None."""
        if now < self.due_at():
            return None
        reasons = []
        full = False
        if self._requested is not None:
            reasons.append(self._requested)
            self._requested = None
            full = True
        if self._pending:
            reasons.append(describe_triggers(self._pending))
            full = full or any(t.kind not in FOCUSED_KINDS for t in self._pending)
            named = frozenset(t.container_id for t in self._pending if t.container_id)
            self._pending = []
        else:
            named = frozenset()
        if not reasons:
            recheck = self._recheck_at is not None and now >= self._recheck_at
            reasons.append("recheck" if recheck else "resync")
            full = not recheck
        self.focus = None if full else named
        return "; ".join(reasons)

    def finished(self, now: float, recheck_after: float | None) -> None:
        """A reconcile ended at ``now``; it wants another after ``recheck_after`` s."""
        self._last_end = now
        self._recheck_at = None if recheck_after is None else now + max(0.0, recheck_after)


def describe_triggers(triggers: list[Trigger]) -> str:
    """The triggers in a few words, by kind: "podman-event: container died web,
    container remove web; db-changed: IN_MODIFY ipam.db (+3 more)"."""
    by_kind: dict[str, list[str]] = {}
    for trigger in triggers:
        by_kind.setdefault(trigger.kind, []).append(trigger.reason)
    parts = []
    for kind, reasons in by_kind.items():
        distinct = [r for r in dict.fromkeys(reasons) if r]
        text = f"{kind}: {', '.join(distinct[:MAX_REASONS])}" if distinct else kind
        more = len(reasons) - min(len(distinct), MAX_REASONS) - (0 if distinct else 1)
        parts.append(f"{text} (+{more} more)" if more > 0 else text)
    return "; ".join(parts)
