"""Logging: structlog, written to the journal natively under systemd, lines elsewhere.

Callers log events with structured keys::

    log = structlog.get_logger()
    log.warning("leaked allocation", message_id=messages.LEAK_FOUND,
                network="web", subnet="172.19.10.0/24", ip="172.19.10.11",
                container_id=cid, finding="leaked")

Formats (``[log] format`` or ``--log-format``):

- ``journal``: the native protocol (ipamguard/journal.py). MESSAGE (the event and
  its key=value pairs, the traceback appended), PRIORITY (from the level),
  SYSLOG_IDENTIFIER=ipamguard, MESSAGE_ID, and one ``IPAMGUARD_<KEY>`` field per
  key: IPAMGUARD_NETWORK, IPAMGUARD_SUBNET, IPAMGUARD_IP, IPAMGUARD_CONTAINER_ID,
  IPAMGUARD_FINDING, ... If journald cannot be reached, the line goes to stderr.
- ``console``: readable lines on stderr; ``json``: one JSON object per line.
- ``auto``: ``journal`` when journald's socket exists and stderr is not a
  terminal (someone running the daemon by hand sees its lines), else ``console``.

Records of the standard ``logging`` module (libraries) go through the same output.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ipamguard.config import LogConfig
from ipamguard.journal import JOURNAL_SOCKET, JournalSocket, encode_entry, field_name

SYSLOG_IDENTIFIER = "ipamguard"
FIELD_PREFIX = "IPAMGUARD_"

# syslog priorities of structlog's level names (before structlog 24.1, add_log_level
# named log.exception()'s level "exception")
PRIORITIES = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "info": 6, "debug": 7}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}  # fmt: skip

# keys that are not rendered as key=value / IPAMGUARD_* fields
_RESERVED = frozenset({"event", "level", "message_id", "exception", "timestamp"})


def resolve_format(
    configured: str, journal_socket: str = JOURNAL_SOCKET, stream: TextIO | None = None
) -> str:
    """``journal``, ``console`` or ``json`` for a configured format (``auto`` resolved)."""
    if configured != "auto":
        return configured
    stream = stream if stream is not None else sys.stderr
    interactive = stream.isatty()
    return "journal" if os.path.exists(journal_socket) and not interactive else "console"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_text(v) for v in value)
    return str(value)


def _key_values(event_dict: EventDict, said: str = "") -> str:
    """key=value for the context; a value the message already says (a whole word of
    it: an IP, a container ID) is left out."""
    words = {word.strip(":,;()'\"") for word in said.split()}
    parts = []
    for key, value in event_dict.items():
        if key in _RESERVED or value is None:
            continue
        text = _text(value)
        if text in words:
            continue
        quote = not text or any(c.isspace() for c in text)  # one token, one line
        parts.append(f"{key}={text!r}" if quote else f"{key}={text}")
    return " ".join(parts)


def render_journal_fields(event_dict: EventDict) -> list[tuple[str, str]]:
    """The journal fields of one event (after ``add_log_level`` and ``format_exc_info``)."""
    message = str(event_dict.get("event", ""))
    pairs = _key_values(event_dict, said=message)  # the fields carry every value anyway
    if pairs:
        message = f"{message} {pairs}" if message else pairs
    if event_dict.get("exception"):
        message += "\n" + str(event_dict["exception"]).rstrip("\n")
    level = str(event_dict.get("level", "info"))
    fields = [
        ("MESSAGE", message),
        ("PRIORITY", str(PRIORITIES.get(level, 6))),
        ("SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER),
    ]
    if event_dict.get("message_id"):
        fields.append(("MESSAGE_ID", str(event_dict["message_id"])))
    for key, value in event_dict.items():
        if key not in _RESERVED and value is not None:
            fields.append((field_name(key, FIELD_PREFIX), _text(value)))
    return fields


def journal_renderer(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> Any:
    """Last processor for ``JournalLogger``: its ``msg`` gets the list of fields."""
    return (render_journal_fields(event_dict),), {}


class JournalLogger:
    """Sends rendered fields to journald; falls back to a line on ``fallback``."""

    __slots__ = ("_fallback", "_socket")

    def __init__(self, journal: JournalSocket, fallback: TextIO) -> None:
        self._socket = journal
        self._fallback = fallback

    def msg(self, fields: Sequence[tuple[str, str]]) -> None:
        try:
            self._socket.send(encode_entry(fields))
        except OSError as error:
            message = next((v for k, v in fields if k == "MESSAGE"), "")
            print(f"{message} (journal at {self._socket.path}: {error})", file=self._fallback)

    log = debug = info = warn = warning = msg
    err = error = critical = exception = fatal = failure = msg


def _drop_message_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Console lines: the ID means nothing to a reader (it is in the journal)."""
    event_dict.pop("message_id", None)
    return event_dict


class _JournalLoggerFactory:
    """structlog's logger factory: the one ``JournalLogger``."""

    __slots__ = ("_logger",)

    def __init__(self, logger: JournalLogger) -> None:
        self._logger = logger

    def __call__(self, *_args: Any) -> JournalLogger:
        return self._logger


class _StdlibBridge(logging.Handler):
    """Records of the ``logging`` module (pyinotify, dbus-next, ...) into structlog."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger().log(record.levelno, record.getMessage(), logger=record.name)
        except Exception:
            self.handleError(record)


def configure_logging(
    config: LogConfig,
    format_override: str | None = None,
    *,
    stream: TextIO | None = None,
    journal: JournalSocket | None = None,
) -> str:
    """Set up structlog (and the ``logging`` module) for ``config``; returns the format.

    May be called again (SIGHUP): the loggers are not cached.
    """
    stream = stream if stream is not None else sys.stderr
    journal = journal if journal is not None else JournalSocket()
    chosen = resolve_format(format_override or config.format, journal.path, stream)
    level = LEVELS[config.level]
    processors: list[Processor] = [structlog.processors.add_log_level]
    factory: Callable[..., Any] = structlog.WriteLoggerFactory(file=stream)
    if chosen == "journal":
        processors += [structlog.processors.format_exc_info, journal_renderer]
        factory = _JournalLoggerFactory(JournalLogger(journal, stream))
    elif chosen == "json":
        processors += [
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors += [
            _drop_message_id,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=stream.isatty()),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers[:] = [_StdlibBridge()]
    # libraries are chatty below WARNING, except when debugging
    root.setLevel(logging.DEBUG if level == logging.DEBUG else max(level, logging.WARNING))
    return chosen
