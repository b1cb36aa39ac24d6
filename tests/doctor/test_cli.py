"""``ipamguard doctor`` as a command, with fake links and a fake networkd."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from ipamguard.cli import doctor as doctor_cli
from ipamguard.doctor import DoctorSources
from ipamguard.doctor.links import Link
from ipamguard.doctor.networkd import NetworkdLink, NetworkdStatus
from ipamguard.errors import Refused, UsageError

from .factories import bridge, ether, veth

CATCH_ALL = "[Match]\nName=*\n\n[Network]\nDHCP=yes\n"


class FakeLinks:
    def __init__(self, links: list[Link]) -> None:
        self.current = links

    def links(self) -> list[Link]:
        return list(self.current)


class FakeNetworkd:
    """Manages every link until reloaded; after a reload, lets go of container links."""

    def __init__(self, links: list[Link], network_file: str) -> None:
        self.states = {link.name: "configured" for link in links}
        self.network_file = network_file
        self.reloads = 0

    def status(self) -> NetworkdStatus:
        seen = tuple(
            NetworkdLink(n, name, state, self.network_file if state != "unmanaged" else None)
            for n, (name, state) in enumerate(sorted(self.states.items()), 1)
        )
        return NetworkdStatus(running=True, detail="running", links=seen)

    def reload(self) -> None:
        self.reloads += 1
        for name in self.states:
            if name.startswith(("podman", "veth")):
                self.states[name] = "unmanaged"


World = tuple[DoctorSources, FakeNetworkd]
Capture = pytest.CaptureFixture[str]


@pytest.fixture
def world(tmp_path: Path) -> World:
    network_dir = tmp_path / "etc-systemd-network"
    network_dir.mkdir()
    (network_dir / "99-all.network").write_text(CATCH_ALL)
    links = [ether("eth0", 2), bridge("podman1", 3), veth("veth0", 4, master="podman1")]
    networkd = FakeNetworkd(links, str(network_dir / "99-all.network"))
    sources = DoctorSources(
        links=FakeLinks(links),
        networkd=networkd,
        podman_dirs=(tmp_path / "no-podman",),
        cni_dirs=(tmp_path / "no-cni",),
        network_dirs=(network_dir,),
        dropin_path=network_dir / "00-ipamguard-container-links.network",
    )
    return sources, networkd


def doctor(sources: DoctorSources, capsys: Capture, *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    doctor_cli.register(parser.add_subparsers())
    args = parser.parse_args(["doctor", *argv])
    code = doctor_cli.run(args, sources)
    return code, capsys.readouterr().out


def test_reports_managed_container_links_as_json(world: World, capsys: Capture) -> None:
    sources, _ = world
    code, out = doctor(sources, capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["exit_code"] == 1 and not report["healthy"]
    assert [(f["kind"], f["link"]) for f in report["findings"]] == [
        ("networkd-manages-container-link", "podman1"),
        ("networkd-manages-container-link", "veth0"),
    ]
    assert report["findings"][0]["network_file"].endswith("/99-all.network")
    assert "fix" not in report


def test_text_output_names_the_file(world: World, capsys: Capture) -> None:
    sources, _ = world
    code, out = doctor(sources, capsys)
    assert code == 1
    assert "manages container link veth0 (state configured), caught by" in out
    assert out.rstrip().endswith("problems found")


def test_fix_writes_reloads_and_is_idempotent(world: World, capsys: Capture) -> None:
    sources, networkd = world
    code, out = doctor(sources, capsys, "--fix", "--yes")
    assert code == 0
    assert out.index("Unmanaged=yes") < out.index("after the fix:")  # shown before written
    content = sources.dropin_path.read_text()
    assert "Name=podman[0-9]* veth*" in content
    assert networkd.reloads == 1
    mtime = sources.dropin_path.stat().st_mtime_ns

    code, out = doctor(sources, capsys, "--fix", "--yes", "--json")
    fixed = json.loads(out)
    assert code == 0 and fixed["fix"]["action"] == "nothing" and not fixed["fix"]["applied"]
    assert networkd.reloads == 1
    assert sources.dropin_path.stat().st_mtime_ns == mtime


def test_fix_json_keeps_stdout_one_document(world: World, capsys: Capture) -> None:
    sources, _ = world
    parser = argparse.ArgumentParser()
    doctor_cli.register(parser.add_subparsers())
    code = doctor_cli.run(parser.parse_args(["doctor", "--fix", "--yes", "--json"]), sources)
    captured = capsys.readouterr()
    fixed = json.loads(captured.out)
    assert code == 0 and fixed["fix"]["applied"] and fixed["fix"]["action"] == "write"
    assert [f["link"] for f in fixed["fix"]["findings_before"]] == ["podman1", "veth0"]
    assert fixed["findings"] == []
    assert "Unmanaged=yes" in captured.err  # the plan was shown, on stderr


def test_dry_run_changes_nothing(world: World, capsys: Capture) -> None:
    sources, networkd = world
    code, out = doctor(sources, capsys, "--fix", "--dry-run")
    assert code == 1
    assert "--fix would: create" in out and "Unmanaged=yes" in out
    assert not sources.dropin_path.exists() and networkd.reloads == 0


def test_fix_without_a_terminal_needs_yes(
    world: World, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources, networkd = world
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(Refused, match="--yes"):
        doctor(sources, capsys, "--fix")
    assert not sources.dropin_path.exists() and networkd.reloads == 0


@pytest.mark.parametrize(("answer", "written"), [("n\n", False), ("yes\n", True)])
def test_fix_asks_on_a_terminal(
    world: World, capsys: Capture, monkeypatch: pytest.MonkeyPatch, answer: str, written: bool
) -> None:
    sources, networkd = world

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal(answer))
    doctor(sources, capsys, "--fix")
    assert sources.dropin_path.exists() is written
    assert networkd.reloads == int(written)


def test_a_foreign_file_is_not_replaced(world: World, capsys: Capture) -> None:
    sources, _ = world
    sources.dropin_path.write_text("[Match]\nName=eth0\n")
    with pytest.raises(Refused, match="not written by ipamguard"):
        doctor(sources, capsys, "--fix", "--yes")


def test_yes_and_dry_run_need_fix(world: World, capsys: Capture) -> None:
    sources, _ = world
    with pytest.raises(UsageError):
        doctor(sources, capsys, "--yes")
