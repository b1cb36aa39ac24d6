"""When reconciles are due: debounce, the cap on a burst, rechecks, resync (pure)."""

from __future__ import annotations

from ipamguard.daemon.schedule import MAX_DELAY_FACTOR, Schedule, describe_triggers
from ipamguard.daemon.triggers import Trigger

DB = Trigger("db-changed", None, "IN_MODIFY ipam.db")
DIED = Trigger("podman-event", "c" * 64, "container died web")


def test_idle_means_resync_only() -> None:
    s = Schedule(debounce=1.0, resync=300.0, now=0.0)
    s.finished(10.0, None)
    assert s.due_at() == 310.0
    assert s.take(309.9) is None
    assert s.take(310.0) == "resync"


def test_a_burst_is_one_reconcile_after_a_quiet_period() -> None:
    s = Schedule(debounce=1.0, resync=300.0, now=0.0)
    s.finished(0.0, None)
    for t in (5.0, 5.2, 5.9, 6.5):
        s.add(t, DB)
        assert s.take(t) is None
    assert s.due_at() == 7.5
    assert s.take(7.4) is None
    assert s.take(7.5) == "db-changed: IN_MODIFY ipam.db (+3 more)"
    assert s.pending == 0
    assert s.take(7.6) is None


def test_steady_churn_cannot_postpone_forever() -> None:
    s = Schedule(debounce=1.0, resync=300.0, now=0.0)
    s.finished(0.0, None)
    t = 1.0
    while s.take(t) is None:
        s.add(t, DB)
        t += 0.5
    assert t - 0.5 <= 1.0 + MAX_DELAY_FACTOR * 1.0 + 0.5


def test_triggers_during_a_reconcile_make_exactly_one_more() -> None:
    s = Schedule(debounce=1.0, resync=300.0, now=0.0)
    s.finished(0.0, None)
    s.add(1.0, DB)
    assert s.take(2.0) is not None  # reconcile runs 2.0 .. 6.0
    s.add(2.5, DIED)
    s.add(3.0, DB)
    s.finished(6.0, None)
    assert s.take(6.0) == "podman-event: container died web; db-changed: IN_MODIFY ipam.db"
    s.finished(6.1, None)
    assert s.take(6.1) is None
    assert s.due_at() == 306.1


def test_recheck_and_request() -> None:
    s = Schedule(debounce=1.0, resync=300.0, now=0.0)
    s.finished(0.0, recheck_after=60.0)
    assert s.take(59.0) is None
    assert s.take(60.0) == "recheck"
    s.finished(60.0, None)
    s.request("configuration reloaded")
    s.add(61.0, DB)
    assert s.take(61.0) == "configuration reloaded; db-changed: IN_MODIFY ipam.db"


def test_new_intervals_apply_to_the_next_wait() -> None:
    s = Schedule(debounce=1.0, resync=300.0, now=0.0)
    s.finished(0.0, None)
    s.configure(debounce=0.1, resync=5.0)
    assert s.due_at() == 5.0
    s.add(1.0, DB)
    assert s.due_at() == 1.1


def test_zero_debounce_is_immediate() -> None:
    s = Schedule(debounce=0.0, resync=300.0, now=0.0)
    s.finished(0.0, None)
    s.add(1.0, DB)
    assert s.take(1.0) == "db-changed: IN_MODIFY ipam.db"


def test_describe_triggers() -> None:
    many = [Trigger("podman-event", None, f"container died c{i}") for i in range(5)]
    writes = [DB, DB, Trigger("db-changed", None, "IN_CLOSE_WRITE ipam.db")]
    assert describe_triggers([*writes, *many]) == (
        "db-changed: IN_MODIFY ipam.db, IN_CLOSE_WRITE ipam.db (+1 more); "
        "podman-event: container died c0, container died c1, container died c2 (+2 more)"
    )
    assert describe_triggers([Trigger("podman-up")]) == "podman-up"
    assert describe_triggers([Trigger("podman-up"), Trigger("podman-up")]) == "podman-up (+1 more)"


def test_the_focus_of_a_reconcile() -> None:
    """Container events and ipam.db changes: the containers named (the cycle adds what
    changed in ipam.db and its open findings); a resync, a request, or podman coming
    back: everything (None)."""
    s = Schedule(debounce=0.0, resync=300.0, now=0.0)
    s.finished(0.0, None)
    s.add(1.0, DIED)
    s.add(1.0, DB)
    assert s.take(1.0) is not None and s.focus == frozenset({"c" * 64})
    s.add(2.0, DB)
    assert s.take(2.0) is not None and s.focus == frozenset()
    s.add(3.0, Trigger("podman-up", None, "reconnected"))
    assert s.take(3.0) is not None and s.focus is None
    s.request("configuration reloaded")
    s.add(4.0, DIED)
    assert s.take(4.0) is not None and s.focus is None
    s.finished(5.0, 1.0)  # a recheck (a grace period ends): focused on nothing new
    assert s.take(6.0) == "recheck" and s.focus == frozenset()
    s.finished(6.0, None)
    assert s.take(306.0) == "resync" and s.focus is None
