"""``ipamguard doctor``: systemd-networkd fighting podman over container links.

Finds container bridges and veths (podman/CNI configs, default names, sysfs),
asks networkd over D-Bus which of them it manages and which ``.network`` file
caught them, checks that every container veth is on its bridge and up, and can
write a drop-in that marks those links unmanaged.
"""

from __future__ import annotations

from ipamguard.doctor.analysis import Finding
from ipamguard.doctor.fix import FixPlan
from ipamguard.doctor.report import (
    DoctorReport,
    DoctorSources,
    apply_fix,
    plan_fix,
    run_doctor,
)

__all__ = [
    "DoctorReport",
    "DoctorSources",
    "Finding",
    "FixPlan",
    "apply_fix",
    "plan_fix",
    "run_doctor",
]
