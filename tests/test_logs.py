"""structlog configuration: journal fields, console and JSON lines, fallbacks.

A datagram socket bound by the test stands in for journald here; the real
journald is in tests/daemon/test_journald_real.py.
"""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from test_journal import decode_entry

from ipamguard import messages
from ipamguard.config import LogConfig
from ipamguard.journal import JournalSocket
from ipamguard.logs import configure_logging, render_journal_fields, resolve_format

CID = "36e1a6" + "0" * 58


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[tuple[socket.socket, JournalSocket]]:
    path = str(tmp_path / "journal.socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    yield server, JournalSocket(path)
    server.close()


def fields_of(server: socket.socket) -> dict[str, str]:
    return {k: v.decode() for k, v in decode_entry(server.recv(1 << 20))}


def test_resolve_format(tmp_path: Path) -> None:
    present = tmp_path / "socket"
    present.touch()
    absent = str(tmp_path / "absent")
    assert resolve_format("auto", str(present), io.StringIO()) == "journal"
    assert resolve_format("auto", str(present), Tty()) == "console"  # run by hand
    assert resolve_format("auto", absent, io.StringIO()) == "console"
    for explicit in ("journal", "console", "json"):
        assert resolve_format(explicit, absent, Tty()) == explicit


def test_journal_fields(journald: tuple[socket.socket, JournalSocket]) -> None:
    server, journal = journald
    stream = io.StringIO()
    assert configure_logging(LogConfig(format="journal"), stream=stream, journal=journal) == (
        "journal"
    )
    structlog.get_logger().warning(
        "leaked allocation", message_id=messages.LEAK_FOUND, network="web",
        subnet="172.19.10.0/24", ip="172.19.10.11", container_id=CID, finding="leaked",
        evidence=["no source knows it", "gone"], grace_seconds=60, repair=False, skipped=None,
    )  # fmt: skip
    fields = fields_of(server)
    assert fields == {
        # "leaked" is a word of the message already: its key=value is left out of
        # MESSAGE (IPAMGUARD_FINDING still carries it)
        "MESSAGE": "leaked allocation network=web subnet=172.19.10.0/24 ip=172.19.10.11 "
        f"container_id={CID} evidence='no source knows it,gone' "
        "grace_seconds=60 repair=false",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "ipamguard",
        "MESSAGE_ID": messages.LEAK_FOUND,
        "IPAMGUARD_NETWORK": "web",
        "IPAMGUARD_SUBNET": "172.19.10.0/24",
        "IPAMGUARD_IP": "172.19.10.11",
        "IPAMGUARD_CONTAINER_ID": CID,
        "IPAMGUARD_FINDING": "leaked",
        "IPAMGUARD_EVIDENCE": "no source knows it,gone",
        "IPAMGUARD_GRACE_SECONDS": "60",
        "IPAMGUARD_REPAIR": "false",
    }
    assert stream.getvalue() == ""


def test_priorities_levels_and_tracebacks(journald: tuple[socket.socket, JournalSocket]) -> None:
    server, journal = journald
    configure_logging(LogConfig(level="info", format="journal"), journal=journal)
    log = structlog.get_logger()
    log.debug("not sent at info")
    log.info("info")
    assert fields_of(server)["PRIORITY"] == "6"
    log.error("error")
    assert fields_of(server)["PRIORITY"] == "3"
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("crashed", reason="test")
    fields = fields_of(server)
    assert fields["PRIORITY"] == "3"
    first, *rest = fields["MESSAGE"].split("\n")
    assert first == "crashed reason=test"
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"
    assert "IPAMGUARD_EXCEPTION" not in fields
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.recv(1)  # nothing else (the debug line was filtered)


def test_records_of_the_logging_module_go_the_same_way(
    journald: tuple[socket.socket, JournalSocket],
) -> None:
    server, journal = journald
    configure_logging(LogConfig(format="journal"), journal=journal)
    logging.getLogger("urllib3.connectionpool").info("below WARNING: dropped")
    logging.getLogger("urllib3.connectionpool").warning("retrying %s", "GET")
    fields = fields_of(server)
    assert fields["MESSAGE"] == "retrying GET logger=urllib3.connectionpool"
    assert fields["PRIORITY"] == "4"


def test_journal_unreachable_falls_back_to_stderr(tmp_path: Path) -> None:
    stream = io.StringIO()
    journal = JournalSocket(str(tmp_path / "gone"))
    configure_logging(LogConfig(format="journal"), stream=stream, journal=journal)
    structlog.get_logger().warning("still seen", ip="10.0.0.1")
    assert stream.getvalue().startswith("still seen ip=10.0.0.1 (journal at ")


def test_console_lines() -> None:
    stream = io.StringIO()
    assert configure_logging(LogConfig(format="console"), stream=stream) == "console"
    structlog.get_logger().warning(
        "leaked allocation", message_id=messages.LEAK_FOUND, ip="10.0.0.1"
    )
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert "leaked allocation" in line and "ip=10.0.0.1" in line and "warning" in line
    assert "message_id" not in line and "\x1b[" not in line  # no colours off a terminal


def test_json_lines_and_reconfiguration() -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=stream)
    log = structlog.get_logger()
    log.debug("dropped")
    log.info("config reloaded", message_id=messages.CONFIG_RELOADED, changes="none")
    configure_logging(LogConfig(level="debug", format="json"), stream=stream)
    log.debug("now shown")  # the same logger object follows the new level
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "config reloaded"
    assert first["message_id"] == messages.CONFIG_RELOADED
    assert first["level"] == "info" and first["timestamp"].endswith("Z")
    assert second["event"] == "now shown"


def test_format_override_wins(journald: tuple[socket.socket, JournalSocket]) -> None:
    _server, journal = journald
    stream = io.StringIO()
    chosen = configure_logging(LogConfig(format="journal"), "json", stream=stream, journal=journal)
    assert chosen == "json"


def test_render_journal_fields_without_keys() -> None:
    assert render_journal_fields({"event": "plain", "level": "debug"}) == [
        ("MESSAGE", "plain"), ("PRIORITY", "7"), ("SYSLOG_IDENTIFIER", "ipamguard"),
    ]  # fmt: skip
