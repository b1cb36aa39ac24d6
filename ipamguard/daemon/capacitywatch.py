"""The daemon's address-space alert: a subnet running out of free addresses.

Once per crossing: SUBNET_LOW when a subnet's free addresses fall under
``[alerts] subnet_free_percent``, SUBNET_RECOVERED when they are back at or above
it (or the subnet is gone). Alert only: nothing is released for it (a subnet
full of live containers is not a leak; leaks are findings of their own).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from ipamguard import messages
from ipamguard.capacity import SubnetCapacity

log = structlog.get_logger("ipamguard.capacity")

SubnetKey = tuple[str, str, str]  # (store, network, subnet)


class CapacityWatch:
    def __init__(self) -> None:
        self.low: dict[SubnetKey, SubnetCapacity] = {}

    def run(self, subnets: Iterable[SubnetCapacity], percent: float) -> list[SubnetCapacity]:
        """Alert subnets that went under ``percent``, and those back over; return the
        subnets under it now."""
        seen = {(c.store, c.network, c.subnet): c for c in subnets}
        current = {key: c for key, c in seen.items() if c.is_low(percent)}
        for key, capacity in current.items():
            if key not in self.low:
                log.warning(
                    f"subnet running out of addresses: {capacity.describe()}",
                    message_id=messages.SUBNET_LOW,
                    **_fields(capacity),
                    threshold_percent=percent,
                )
        for key, before in self.low.items():
            if key in current:
                continue
            now = seen.get(key)
            text = (
                f"subnet has addresses again: {now.describe()}"
                if now
                else (f"subnet gone: {before.network} {before.subnet}")
            )
            log.info(
                text,
                message_id=messages.SUBNET_RECOVERED,
                **_fields(now or before),
                threshold_percent=percent,
            )
        self.low = current
        return list(current.values())


def _fields(capacity: SubnetCapacity) -> dict[str, object]:
    return {
        "store": capacity.store,
        "network": capacity.network,
        "subnet": capacity.subnet,
        "size": capacity.size,
        "allocated": capacity.allocated,
        "free": capacity.free,
        "free_percent": round(capacity.free_percent, 1),
    }
