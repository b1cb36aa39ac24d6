"""``ipamguard daemon``: the long-running service around the reconcile cycle.

- app.py: assembly (config, logging, cycle, trigger sources, signals);
- service.py: the asyncio loop (schedule.py decides when to reconcile);
- cycle_api.py: the ``Cycle`` protocol and ``CycleResult``;
- triggers.py, podman_events.py, db_watch.py: what makes it look again;
- sdnotify.py: READY/STATUS/WATCHDOG/STOPPING for systemd.
"""

from __future__ import annotations

from ipamguard.daemon.cycle_api import Cycle, CycleResult

__all__ = ["Cycle", "CycleResult"]
