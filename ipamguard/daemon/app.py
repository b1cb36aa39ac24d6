"""``ipamguard daemon`` assembled: config, logging, the cycle, triggers, signals."""

from __future__ import annotations

import asyncio
import importlib
import signal
from collections.abc import Sequence

from ipamguard.config import Config, load_config
from ipamguard.daemon.cycle_api import Cycle
from ipamguard.daemon.service import Service
from ipamguard.daemon.triggers import TriggerSource
from ipamguard.errors import UsageError

DEFAULT_CYCLE = "ipamguard.daemon.cycle:make_cycle"


def make_sources(config: Config) -> Sequence[TriggerSource]:
    """podman's event stream and inotify on ipam.db."""
    from ipamguard.daemon.db_watch import DbWatch
    from ipamguard.daemon.podman_events import PodmanEvents

    return (
        PodmanEvents(config.podman.url, config.podman.timeout_seconds),
        DbWatch(config.paths.db),
    )


def make_cycle(spec: str = DEFAULT_CYCLE) -> Cycle:
    """Call the factory ``MODULE:FUNCTION`` (``--cycle``; tests pass a stand-in)."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise UsageError(f"--cycle: expected MODULE:FUNCTION, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"cannot load the reconcile cycle {spec}: {error}") from None
    cycle: Cycle = factory()
    return cycle


def run_daemon(
    config_path: str | None, log_format: str | None = None, cycle_spec: str = DEFAULT_CYCLE
) -> int:
    """Run until SIGTERM/SIGINT; a bad config raises ConfigError before anything starts."""
    from ipamguard.daemon.sdnotify import Notifier, watchdog_interval
    from ipamguard.logs import configure_logging

    config = load_config(config_path)
    configure_logging(config.log, log_format)

    def apply(new: Config) -> None:
        configure_logging(new.log, log_format)

    service = Service(
        make_cycle(cycle_spec),
        config,
        load_config=lambda: load_config(config_path),
        make_sources=make_sources,
        notifier=Notifier.from_environ(),
        watchdog_seconds=watchdog_interval(),
        on_config=apply,
    )
    return asyncio.run(_serve(service))


async def _serve(service: Service) -> int:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, service.request_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, service.request_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, service.request_reload)
    return await service.run()
