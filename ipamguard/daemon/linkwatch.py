"""The daemon's part of ``doctor``: alert when container links are in trouble.

After reconciles (container start events trigger one too) the daemon runs the
doctor's checks and alerts, once per problem and again when it changes:
systemd-networkd managing a container link, or a container veth that left its
bridge or is down. Alert only: the daemon never rewrites networkd's config.

The checks read every link of the host from sysfs (a thousand containers: a thousand
veths, ~115 ms), so during a burst of podman runs they run at most once every
``CHECK_EVERY`` seconds; the cycle asks for a recheck when one was left out, so the
last change of a burst is always checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from ipamguard import messages
from ipamguard.doctor.analysis import MANAGED, PROBLEM, Finding

log = structlog.get_logger("ipamguard.links")
CHECK_EVERY = 5.0  # seconds between two checks at least, but for a full look


def _run_doctor() -> Sequence[Finding]:
    from ipamguard.doctor import run_doctor

    return run_doctor().findings


class LinkWatch:
    def __init__(
        self,
        doctor: Callable[[], Sequence[Finding]] = _run_doctor,
        every: float = CHECK_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.doctor = doctor
        self.every = every
        self.clock = clock
        self.checked_at: float | None = None
        self.alerted: dict[tuple[str, str | None], str] = {}

    def due_in(self) -> float:
        """Seconds before the next check may run (0: now)."""
        if self.checked_at is None:
            return 0.0
        return max(0.0, self.every - (self.clock() - self.checked_at))

    def run(self) -> int:
        """Check once; alert new or changed problems; return how many there are."""
        self.checked_at = self.clock()
        problems = [f for f in self.doctor() if f.severity == PROBLEM]
        current = {(f.kind, f.link): f for f in problems}
        for key in [k for k in self.alerted if k not in current]:
            del self.alerted[key]
        for key, finding in current.items():
            if self.alerted.get(key) == finding.message:
                continue
            self.alerted[key] = finding.message
            message_id = (
                messages.NETWORKD_CONFLICT if finding.kind == MANAGED else messages.VETH_DETACHED
            )
            log.warning(
                finding.message,
                message_id=message_id,
                finding=finding.kind,
                link=finding.link,
                network_file=finding.network_file,
                hint=finding.hint,
            )
        return len(current)
