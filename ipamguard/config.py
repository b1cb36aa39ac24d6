"""The daemon's configuration: ``/etc/ipamguard/ipamguard.toml``.

Every key is optional and every default is safe (alert only, nothing released).
Unknown sections and keys, wrong types and bad values are a ``ConfigError`` with
one line naming the file, the section and the key::

    ipamguard.toml: [repair] grace_seconds: expected a non-negative number, got 'x'

``parse_config`` is pure (text in, ``Config`` out); ``load_config`` reads the file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ipamguard.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/ipamguard/ipamguard.toml"

REPAIR_KINDS = ("leaked", "stale", "dangling", "orphan-network", "malformed")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "journal", "console", "json")


@dataclass(frozen=True)
class RepairConfig:
    """[repair]: what the daemon may heal by itself (nothing, by default)."""

    enabled: bool = False
    grace_seconds: float = 60.0
    kinds: tuple[str, ...] = ("leaked", "stale", "dangling")


@dataclass(frozen=True)
class PodmanConfig:
    """[podman]: how to reach podman's API (liveness and the event stream)."""

    url: str | None = None  # None: podman's socket for the mode (root or the user)
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class WatchConfig:
    """[watch]: when the daemon looks again."""

    resync_seconds: float = 300.0
    debounce_seconds: float = 0.25


@dataclass(frozen=True)
class PathsConfig:
    """[paths]: podman's files and ipamguard's backups."""

    db: str | None = None  # None: where podman keeps it (containers.conf, storage.conf)
    network_dir: str | None = None
    backup_dir: str | None = None  # None: /var/lib/ipamguard/backups, or the user's
    backups_keep: int = 20
    full_backup_seconds: float = 3600.0  # a full copy of ipam.db at most this often


@dataclass(frozen=True)
class LogConfig:
    """[log]: level and output format (auto: journald's socket if it exists)."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: Prometheus metrics for node_exporter's textfile collector (off if unset)."""

    textfile: str | None = None


@dataclass(frozen=True)
class AlertsConfig:
    """[alerts]: thresholds of the daemon's (and check's) alerts that are not findings."""

    subnet_free_percent: float = 10.0  # a subnet with less free is reported; 0: never


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``Config()`` is the defaults."""

    repair: RepairConfig = field(default_factory=RepairConfig)
    podman: PodmanConfig = field(default_factory=PodmanConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)


# --- value checks: each returns the converted value or raises _Bad(expected) ------


class _Bad(Exception):
    """A value does not fit; the argument says what was expected."""


Check = Callable[[Any], Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false")
    return value


def _grace(value: Any) -> float:
    if not _is_number(value) or not 0 <= value <= 86400:
        raise _Bad("seconds between 0 and 86400")
    return float(value)


def _bounded_delay(value: Any) -> float:
    if not _is_number(value) or not 0 <= value <= 60:
        raise _Bad("seconds between 0 and 60")
    return float(value)


def _positive_integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _Bad("a whole number of at least 1 (the backup just written is kept)")
    return value


def _seconds(upper: float) -> Check:
    """A number of seconds, 0 < value <= upper (a bigger one is a typo, not a wish)."""

    def check(value: Any) -> float:
        if not _is_number(value) or not 0 < value <= upper:
            raise _Bad(f"seconds, more than 0 and at most {upper:g}")
        return float(value)

    return check


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise _Bad("an absolute path")
    return os.path.normpath(value)


def _textfile(value: Any) -> str:
    expected = "an absolute path ending in .prom (node_exporter reads only *.prom files)"
    try:
        path = _absolute_path(value)
    except _Bad:
        raise _Bad(expected) from None
    if not path.endswith(".prom") or os.path.basename(path) == ".prom":
        raise _Bad(expected)
    return path


def _percent(value: Any) -> float:
    if not _is_number(value) or not 0 <= value <= 100:
        raise _Bad("a percentage between 0 and 100 (0: never)")
    return float(value)


def _podman_url(value: Any) -> str:
    expected = "a URL such as unix:///run/podman/podman.sock or tcp://HOST:PORT"
    if not isinstance(value, str):
        raise _Bad(expected)
    if value.startswith("unix://") and value[len("unix://") :].startswith("/"):
        return value
    host, _, port = value.removeprefix("tcp://").rpartition(":")
    if value.startswith("tcp://") and host and port.isdigit() and 0 < int(port) < 65536:
        return value
    raise _Bad(expected)


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if value not in options:
            raise _Bad("one of " + ", ".join(options))
        return str(value)

    return check


def _repair_kinds(value: Any) -> tuple[str, ...]:
    expected = "a list of distinct kinds from " + ", ".join(REPAIR_KINDS)
    if not isinstance(value, list) or any(kind not in REPAIR_KINDS for kind in value):
        raise _Bad(expected)
    if len(set(value)) != len(value):
        raise _Bad(expected)
    return tuple(value)


# section -> (dataclass, key -> check); the keys are the dataclass's fields.
_SCHEMA: Mapping[str, tuple[type[Any], Mapping[str, Check]]] = {
    "repair": (
        RepairConfig,
        {"enabled": _boolean, "grace_seconds": _grace, "kinds": _repair_kinds},
    ),
    "podman": (PodmanConfig, {"url": _podman_url, "timeout_seconds": _seconds(300)}),
    "watch": (
        WatchConfig,
        {"resync_seconds": _seconds(86400), "debounce_seconds": _bounded_delay},
    ),
    "paths": (
        PathsConfig,
        {
            "db": _absolute_path,
            "network_dir": _absolute_path,
            "backup_dir": _absolute_path,
            "backups_keep": _positive_integer,
            "full_backup_seconds": _seconds(7 * 86400),
        },
    ),
    "log": (LogConfig, {"level": _choice(LOG_LEVELS), "format": _choice(LOG_FORMATS)}),
    "metrics": (MetricsConfig, {"textfile": _textfile}),
    "alerts": (AlertsConfig, {"subnet_free_percent": _percent}),
}


def _show(value: Any) -> str:
    """A value as the user wrote it, roughly in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "a table"
    return str(value)


def parse_config(text: str, source: str = DEFAULT_CONFIG_PATH) -> Config:
    """Parse and check TOML text; ``source`` names the file in error messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    sections: dict[str, Any] = {}
    for name, table in document.items():
        if name not in _SCHEMA:
            known = ", ".join(f"[{s}]" for s in _SCHEMA)
            if isinstance(table, dict):
                raise ConfigError(f"{source}: unknown section [{name}] (known: {known})")
            raise ConfigError(
                f"{source}: unknown top-level key {name!r} (keys belong in a section: {known})"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}]: expected a table, got {_show(table)}")
        sections[name] = _parse_section(name, table, source)
    return Config(**sections)


def _parse_section(name: str, table: Mapping[str, Any], source: str) -> Any:
    cls, checks = _SCHEMA[name]
    values = {}
    for key, value in table.items():
        check = checks.get(key)
        if check is None:
            known = ", ".join(checks)
            raise ConfigError(f"{source}: [{name}] unknown key {key!r} (known: {known})")
        try:
            values[key] = check(value)
        except _Bad as bad:
            raise ConfigError(
                f"{source}: [{name}] {key}: expected {bad}, got {_show(value)}"
            ) from None
    return cls(**values)


def default_config_path(user: bool = False) -> str:
    """/etc/ipamguard/ipamguard.toml, or $XDG_CONFIG_HOME/ipamguard/ipamguard.toml (user)."""
    if not user:
        return DEFAULT_CONFIG_PATH
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(home, "ipamguard", "ipamguard.toml")


def load_config(path: str | None = None, user: bool = False) -> Config:
    """Read the configuration file.

    ``path`` None: the default file (root's, or the user's), whose absence means the
    defaults. A path given explicitly (``--config``) must exist.
    """
    explicit = path is not None
    source = path if path is not None else default_config_path(user)
    try:
        with open(source, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{source}: no such file") from None
        return Config()
    except OSError as error:
        raise ConfigError(f"{source}: cannot read: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{source}: not UTF-8 text (byte {error.start})") from None
    return parse_config(text, source)


GRACE_FLOOR_SECONDS = 10.0


def warnings(config: Config) -> list[str]:
    """Values that are allowed but unwise, one line each (logged at start and reload)."""
    found = []
    grace = config.repair.grace_seconds
    if config.repair.enabled and grace < GRACE_FLOOR_SECONDS:
        found.append(
            f"[repair] grace_seconds = {grace:g} is below {GRACE_FLOOR_SECONDS:g} s: a finding "
            "is released after a single look (or two looks that close); every release is "
            "still fenced and probed, but a transient state that no source reports (a "
            "container between podman's allocation and its first state change) is given "
            "no time to show itself"
        )
    return found


def config_keys() -> dict[str, tuple[str, ...]]:
    """Every section and its keys, in order (for docs and tests)."""
    return {
        name: tuple(f.name for f in dataclasses.fields(cls)) for name, (cls, _) in _SCHEMA.items()
    }


def config_changes(old: Config, new: Config) -> list[str]:
    """What differs, as "[section] key: old -> new" lines (for the reload message)."""
    changes = []
    for name in _SCHEMA:
        before, after = getattr(old, name), getattr(new, name)
        for f in dataclasses.fields(before):
            a, b = getattr(before, f.name), getattr(after, f.name)
            if a != b:
                changes.append(
                    f"[{name}] {f.name}: {_show_value(a, name)} -> {_show_value(b, name)}"
                )
    return changes


def _show_value(value: Any, section: str = "") -> str:
    if value is None:
        return "(off)" if section == "metrics" else "(podman's)"
    return _show(list(value)) if isinstance(value, tuple) else _show(value)
