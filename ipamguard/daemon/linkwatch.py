"""The daemon's part of ``doctor``: alert when container links are in trouble.

After every reconcile (container start events trigger one too) the daemon runs
the doctor's checks and alerts, once per problem and again when it changes:
systemd-networkd managing a container link, or a container veth that left its
bridge or is down. Alert only: the daemon never rewrites networkd's config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from ipamguard import messages
from ipamguard.doctor.analysis import MANAGED, PROBLEM, Finding

log = structlog.get_logger("ipamguard.links")


def _run_doctor() -> Sequence[Finding]:
    from ipamguard.doctor import run_doctor

    return run_doctor().findings


class LinkWatch:
    def __init__(self, doctor: Callable[[], Sequence[Finding]] = _run_doctor) -> None:
        self.doctor = doctor
        self.alerted: dict[tuple[str, str | None], str] = {}

    def run(self) -> int:
        """Check once; alert new or changed problems; return how many there are."""
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
