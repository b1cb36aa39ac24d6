"""Rendering and planning the drop-in, and writing it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipamguard.doctor import fix
from ipamguard.doctor.analysis import MANAGED, PROBLEM, Finding
from ipamguard.doctor.matching import parse_network_file, parse_unit
from ipamguard.errors import Refused

from .factories import bridge, veth

LINKS = [bridge("podman1", 3), veth("veth0", 4)]
MANAGED_FINDINGS = [Finding(MANAGED, PROBLEM, "m", link=name) for name in ("podman1", "veth0")]
CATCH_ALL = parse_network_file(Path("/etc/systemd/network/99-all.network"), "[Match]\nName=*\n")


def test_patterns_cover_bridge_families_exact_names_and_veths() -> None:
    bridges = ["podman1", "podman0", "cni-podman0", "docker0", "br-0123456789ab", "mynet"]
    assert fix.match_patterns(bridges) == [
        "br-" + "[0-9a-f]" * 12,
        "cni-podman[0-9]*",
        "docker0",
        "mynet",
        "podman[0-9]*",
        "veth*",
    ]
    assert fix.match_patterns([]) == ["veth*"]


def test_rendered_file_is_deterministic_and_marks_links_unmanaged() -> None:
    text = fix.render_dropin(["podman1", "mynet"])
    assert text == fix.render_dropin(["mynet", "podman1", "podman1"])
    assert text.startswith(fix.MARKER)
    entries = parse_unit(text)
    assert ("Match", "Name", "mynet podman[0-9]* veth*") in entries
    assert ("Link", "Unmanaged", "yes") in entries
    dropin = parse_network_file(fix.DROPIN_PATH, text)
    assert dropin.unmanaged


def test_plan_writes_when_networkd_manages_container_links() -> None:
    plan = fix.plan_fix(MANAGED_FINDINGS, ["podman1"], LINKS, [CATCH_ALL], None)
    assert plan.action == fix.WRITE
    assert plan.links == ("podman1", "veth0")
    assert plan.warnings == ()
    assert "create" in plan.reason


def test_plan_is_idempotent() -> None:
    content = fix.render_dropin(["podman1"])
    nothing = fix.plan_fix([], ["podman1"], LINKS, [CATCH_ALL], content)
    assert nothing.action == fix.NOTHING
    # file in place but networkd still manages the links: only reload
    reload = fix.plan_fix(MANAGED_FINDINGS, ["podman1"], LINKS, [CATCH_ALL], content)
    assert reload.action == fix.RELOAD
    # new bridges found: update our own file
    update = fix.plan_fix(MANAGED_FINDINGS, ["podman1", "docker0"], LINKS, [CATCH_ALL], content)
    assert update.action == fix.WRITE and "update" in update.reason


def test_a_file_we_did_not_write_is_never_replaced() -> None:
    with pytest.raises(Refused, match="not written by ipamguard"):
        fix.plan_fix(MANAGED_FINDINGS, ["podman1"], LINKS, [], "[Match]\nName=eth0\n")


def test_plan_warns_about_files_that_sort_before_the_dropin() -> None:
    early = parse_network_file(Path("/etc/systemd/network/0-all.network"), "[Match]\nName=*\n")
    maybe = parse_network_file(
        Path("/run/systemd/network/00-a.network"), "[Match]\nName=veth*\nHost=x\n"
    )
    plan = fix.plan_fix(MANAGED_FINDINGS, ["podman1"], LINKS, [early, CATCH_ALL], None)
    assert plan.warnings == (
        "podman1: the drop-in does not match it (/etc/systemd/network/0-all.network does)",
        "veth0: the drop-in does not match it (/etc/systemd/network/0-all.network does)",
    )
    plan = fix.plan_fix(MANAGED_FINDINGS, ["podman1"], LINKS, [maybe, CATCH_ALL], None)
    assert plan.warnings == (
        "veth0: /run/systemd/network/00-a.network sorts before the drop-in and may match it first",
    )


def test_write_dropin_creates_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "00-ipamguard-container-links.network"
    plan = fix.plan_fix(MANAGED_FINDINGS, ["podman1"], LINKS, [], None, path)
    fix.write_dropin(plan)
    assert path.read_text() == plan.content
    assert path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(path.parent) == [path.name]  # no temp file left behind
    assert fix.read_current(path) == plan.content
    assert fix.read_current(tmp_path / "absent") is None
