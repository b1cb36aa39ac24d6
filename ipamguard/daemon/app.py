"""``ipamguard daemon`` assembled: config, logging, the cycle, triggers, signals."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence

from ipamguard.config import Config, load_config
from ipamguard.daemon.cycle_api import Cycle, CycleObserver
from ipamguard.daemon.service import Service
from ipamguard.daemon.triggers import TriggerSource


def make_sources(config: Config) -> Sequence[TriggerSource]:
    """podman's event stream and inotify on ipam.db (``config`` resolved)."""
    from ipamguard.daemon.db_watch import DbWatch
    from ipamguard.daemon.podman_events import PodmanEvents

    assert config.podman.url is not None and config.paths.db is not None
    return (
        PodmanEvents(config.podman.url, config.podman.timeout_seconds),
        DbWatch(config.paths.db),
    )


def run_daemon(
    config_path: str | None,
    log_format: str | None = None,
    *,
    user: bool = False,
    cycle: Cycle | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; a bad config raises ConfigError before anything starts.

    ``user``: one user's rootless podman (config, paths, processes of that user);
    ``cycle``: the reconcile (tests and benchmarks pass a stand-in).
    """
    from ipamguard.context import resolve_config
    from ipamguard.daemon.cycle import ReconcileCycle
    from ipamguard.daemon.memory import one_heap
    from ipamguard.daemon.sdnotify import Notifier, watchdog_interval
    from ipamguard.logs import configure_logging

    def load() -> Config:
        return resolve_config(load_config(config_path, user), user)

    one_heap()  # before any thread starts (ipamguard.daemon.memory)
    config = load()
    configure_logging(config.log, log_format)

    def apply(new: Config) -> None:
        configure_logging(new.log, log_format)
        _warn(new)

    _warn(config)
    service = Service(
        cycle if cycle is not None else ReconcileCycle(user=user),
        config,
        load_config=load,
        make_sources=make_sources,
        notifier=Notifier.from_environ(),
        watchdog_seconds=watchdog_interval(),
        on_config=apply,
        observer=_reporter(config, config_path, user),
    )
    return asyncio.run(_serve(service))


def _reporter(config: Config, config_path: str | None, user: bool) -> CycleObserver:
    """The status file (/run/ipamguard), the counters (/var/lib/ipamguard), metrics."""
    from ipamguard.config import default_config_path
    from ipamguard.daemon.reporter import Reporter
    from ipamguard.state import daemon_paths

    state_path, counters_path = daemon_paths(user)
    return Reporter(
        config,
        state_path=state_path,
        counters_path=counters_path,
        user=user,
        config_path=config_path or default_config_path(user),
    )


def _warn(config: Config) -> None:
    import structlog

    from ipamguard import messages
    from ipamguard.config import warnings

    for line in warnings(config):
        structlog.get_logger("ipamguard").warning(line, message_id=messages.CONFIG_WARNING)


async def _serve(service: Service) -> int:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, service.request_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, service.request_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGHUP, service.request_reload)
    return await service.run()
