"""Logging into a real systemd-journald (in the sandbox) through the native protocol.

The logging code runs inside the sandbox's namespaces, where journald's socket is
the real /run/systemd/journal/socket; ``journalctl -o json`` then shows what
journald stored. The catalog is compiled there too (over a private bind mount of
/usr/lib/systemd/catalog), so ``journalctl -x`` shows the explanations.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

from ipamguard import messages

REPO = Path(__file__).resolve().parents[2]
CID = "36e1a6" + "ab" * 29

LOGGING_SCRIPT = textwrap.dedent(
    f"""
    import structlog
    from ipamguard import messages
    from ipamguard.config import LogConfig
    from ipamguard.logs import configure_logging

    chosen = configure_logging(LogConfig(level="info", format="auto"))
    assert chosen == "journal", chosen
    log = structlog.get_logger()
    log.warning(
        "leaked allocation", message_id=messages.LEAK_FOUND, network="ipg-test",
        subnet="172.19.10.0/24", ip="172.19.10.11", container_id="{CID}", finding="leaked",
        evidence=["no liveness source knows this container"], first_seen=12.5,
    )
    log.info("two lines\\nsecond line", message_id=messages.CONFIG_RELOADED, changes="a\\nb")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("reconcile failed: this is a bug", reason="test")
    log.info("big entry", message_id=messages.FINDING_RESOLVED, blob="x" * 400000)
    log.debug("below the level: not sent")
    print("logged")
    """
)


def run_logging(sandbox: Any) -> None:
    result = sandbox.run(sys.executable, "-c", LOGGING_SCRIPT, env={"PYTHONPATH": str(REPO)})
    assert result.stdout == "logged\n", result.stderr
    assert result.stderr == ""  # nothing fell back to stderr


def test_native_fields_in_a_real_journal(sandbox: Any) -> None:
    sandbox.start_journald()
    run_logging(sandbox)

    (leak,) = sandbox.wait_journal(MESSAGE_ID=messages.LEAK_FOUND)
    assert leak["SYSLOG_IDENTIFIER"] == "ipamguard"
    assert leak["PRIORITY"] == "4"
    assert leak["_TRANSPORT"] == "journal"
    assert leak["IPAMGUARD_NETWORK"] == "ipg-test"
    assert leak["IPAMGUARD_SUBNET"] == "172.19.10.0/24"
    assert leak["IPAMGUARD_IP"] == "172.19.10.11"
    assert leak["IPAMGUARD_CONTAINER_ID"] == CID
    assert leak["IPAMGUARD_FINDING"] == "leaked"
    assert leak["IPAMGUARD_EVIDENCE"] == "no liveness source knows this container"
    assert leak["IPAMGUARD_FIRST_SEEN"] == "12.5"
    assert leak["MESSAGE"].startswith("leaked allocation network=ipg-test subnet=172.19.10.0/24")
    # journald's own trusted fields are journald's, not ours
    assert leak["_COMM"].startswith("python")

    (multi,) = sandbox.journal_entries(MESSAGE_ID=messages.CONFIG_RELOADED)
    assert multi["MESSAGE"] == "two lines\nsecond line changes='a\\nb'"
    assert multi["IPAMGUARD_CHANGES"] == "a\nb"
    assert multi["PRIORITY"] == "6"

    (crash,) = sandbox.journal_entries("SYSLOG_IDENTIFIER=ipamguard", "PRIORITY=3")
    lines = crash["MESSAGE"].split("\n")
    assert lines[0] == "reconcile failed: this is a bug reason=test"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: boom"

    # too big for a datagram: sent through a sealed memfd, stored whole (--all: journalctl
    # shows fields over 4 KiB as null otherwise)
    (big,) = sandbox.journal_entries("--all", MESSAGE_ID=messages.FINDING_RESOLVED)
    assert big["IPAMGUARD_BLOB"] == "x" * 400000

    assert not sandbox.journal_entries("SYSLOG_IDENTIFIER=ipamguard", "PRIORITY=7")


def test_journalctl_x_explains_the_entries(sandbox: Any, tmp_path: Path) -> None:
    sandbox.start_journald()
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir()
    (catalog_dir / "ipamguard.catalog").write_bytes(
        (REPO / "systemd/ipamguard.catalog").read_bytes()
    )
    # the sandbox's own view of /usr/lib/systemd/catalog (the host's stays untouched);
    # the database goes to /var/lib/systemd/catalog, an overlay inside the sandbox
    sandbox.run("mount", "--bind", str(catalog_dir), "/usr/lib/systemd/catalog")
    sandbox.run("journalctl", "--update-catalog")
    run_logging(sandbox)
    sandbox.wait_journal(MESSAGE_ID=messages.LEAK_FOUND)
    shown = sandbox.run(
        "journalctl", "-x", "--no-pager", "-o", "short", f"MESSAGE_ID={messages.LEAK_FOUND}"
    ).stdout
    assert "leaked allocation network=ipg-test" in shown
    assert "Subject: A leaked IP allocation was found in podman's ipam.db" in shown
    assert "Defined-By: ipamguard" in shown
    assert "ipamguard repair" in shown
