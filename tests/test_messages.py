"""MESSAGE_IDs and the journald catalog (systemd/ipamguard.catalog) agree.

The catalog is also compiled by the real ``journalctl --update-catalog`` (into a
private --root), which must then list every ID with its subject.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ipamguard import messages

CATALOG = Path(__file__).resolve().parents[1] / "systemd" / "ipamguard.catalog"
ENTRY = re.compile(r"^-- ([0-9a-f]{32})$", re.MULTILINE)


def catalog_entries() -> dict[str, str]:
    """ID -> the entry's text (header and body), parsed like journalctl does."""
    text = CATALOG.read_text()
    starts = list(ENTRY.finditer(text))
    return {
        m.group(1): text[m.end() : starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        for i, m in enumerate(starts)
    }


def test_message_ids_are_distinct_128_bit_hex() -> None:
    ids = list(messages.MESSAGE_IDS.values())
    assert len(ids) == 17
    assert len(set(ids)) == len(ids)
    for message_id in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", message_id)
        assert message_id[12] == "4"  # uuid4: random, not typed in by hand
    # every constant of the module is in MESSAGE_IDS
    constants = {n: v for n, v in vars(messages).items() if n.isupper() and isinstance(v, str)}
    assert constants == dict(messages.MESSAGE_IDS)


def test_every_message_id_has_a_catalog_entry_and_vice_versa() -> None:
    entries = catalog_entries()
    assert len(entries) == len(ENTRY.findall(CATALOG.read_text()))  # no ID twice
    assert set(entries) == set(messages.MESSAGE_IDS.values())


def test_catalog_entries_are_complete() -> None:
    for message_id, text in catalog_entries().items():
        header, _, body = text.strip("\n").partition("\n\n")
        fields = dict(line.split(": ", 1) for line in header.splitlines())
        assert set(fields) == {"Subject", "Defined-By", "Documentation"}, message_id
        assert fields["Defined-By"] == "ipamguard"
        assert len(body.split()) >= 20, f"{message_id}: say what it means and what to do"
        # journalctl would substitute @FIELD@; unset fields would show literally
        assert "@" not in body, message_id


def test_journalctl_compiles_and_lists_the_catalog(tmp_path: Path) -> None:
    if shutil.which("journalctl") is None:
        if os.environ.get("CI"):
            pytest.fail("journalctl is missing (apt-get install systemd)")
        pytest.skip("journalctl is missing")
    catalog_dir = tmp_path / "usr/lib/systemd/catalog"
    catalog_dir.mkdir(parents=True)
    shutil.copy(CATALOG, catalog_dir)
    update = subprocess.run(
        ["journalctl", f"--root={tmp_path}", "--update-catalog"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert update.returncode == 0, update.stderr
    assert update.stderr == "", update.stderr  # no line of the file was rejected
    assert (tmp_path / "var/lib/systemd/catalog/database").is_file()

    listed = subprocess.run(
        ["journalctl", f"--root={tmp_path}", "--list-catalog"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    subjects = dict(line.split(" ", 1) for line in listed.splitlines())
    assert set(subjects) == set(messages.MESSAGE_IDS.values())
    assert subjects[messages.LEAK_FOUND] == (
        "ipamguard: A leaked IP allocation was found in podman's ipam.db"
    )
    dump = subprocess.run(
        ["journalctl", f"--root={tmp_path}", "--dump-catalog", messages.PODMAN_UNREACHABLE],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "it reconnects with increasing delays" in dump
