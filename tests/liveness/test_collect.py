"""Merging the sources' answers into one snapshot; failures make it incomplete."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass, field

import pytest

from ipamguard.context import Overrides, build_context
from ipamguard.errors import IpamguardError, SourceUnavailable
from ipamguard.liveness import (
    ConmonSource,
    ContainerInfo,
    InFlightSource,
    LivenessSource,
    PodmanApiSource,
    RuntimeStateSource,
    collect,
)
from ipamguard.liveness.model import merge

A = "a" * 64
B = "b" * 64
C = "c" * 64


@dataclass
class FakeSource:
    name: str
    containers: list[tuple[str, str]] = field(default_factory=list)  # (id, state)
    error: str | None = None
    calls: int = 0

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        self.calls += 1
        if self.error is not None:
            raise SourceUnavailable(self.error)
        return [ContainerInfo(cid, state, self.name) for cid, state in self.containers]


def test_an_id_known_to_any_source_is_known() -> None:
    api = FakeSource("podman-api", [(A, "exited")])
    runc = FakeSource("runc", [(B, "running")])
    snap = collect([api, runc], clock=lambda: 1234.5)
    assert snap.taken_at == 1234.5
    assert snap.complete and snap.failures == ()
    assert snap.exists(A) and snap.exists(B) and not snap.exists(C)
    assert not snap.running(A) and snap.running(B) and not snap.running(C)
    assert snap.containers[A].state == "exited"


def test_running_in_any_source_wins_and_evidence_lists_every_source() -> None:
    sources = [
        FakeSource("podman-api", [(A, "exited")]),
        FakeSource("runc", [(A, "running")]),
        FakeSource("conmon", []),
    ]
    snap = collect(sources)
    assert snap.running(A)
    assert snap.containers[A] == ContainerInfo(A, "running", "runc")
    assert snap.evidence(A) == ["podman-api: exited", "runc: running"]
    assert snap.evidence(B) == []


@pytest.mark.parametrize(
    ("state", "running"),
    [
        ("running", True),
        ("paused", True),  # keeps its process and its addresses
        ("stopping", True),
        ("exited", False),
        ("created", False),
        ("initialized", False),  # runtime state says "running" for its `runc init`
        ("storage", False),
        ("stopped", False),
        ("unknown", False),
    ],
)
def test_which_states_count_as_running(state: str, running: bool) -> None:
    snap = collect([FakeSource("podman-api", [(A, state)])])
    assert snap.exists(A)
    assert snap.running(A) is running


def test_a_failing_source_is_recorded_and_the_others_still_answer() -> None:
    api = FakeSource("podman-api", error="podman API at unix:///x: connection refused")
    runc = FakeSource("runc", [(A, "running")])
    snap = collect([api, runc])
    assert not snap.complete
    assert snap.failures == ("podman API at unix:///x: connection refused",)
    assert snap.running(A)
    assert runc.calls == 1


def test_every_source_failing_gives_an_empty_incomplete_snapshot() -> None:
    snap = collect([FakeSource("a", error="a: down"), FakeSource("b", error="")])
    assert snap.failures == ("a: down", "b: could not answer")
    assert snap.containers == {}
    assert not snap.complete


def test_no_sources_is_a_complete_empty_snapshot() -> None:
    assert collect([]).complete


def test_names_are_kept_from_whichever_source_gave_one() -> None:
    merged = merge(
        [
            ContainerInfo(A, "exited", "podman-api", "web"),
            ContainerInfo(A, "running", "runc"),
            ContainerInfo(B, "running", "runc"),
            ContainerInfo(B, "running", "conmon", "db"),
        ]
    )
    assert merged[A] == ContainerInfo(A, "running", "runc", "web")
    assert merged[B] == ContainerInfo(B, "running", "runc", "db")


def test_source_unavailable_is_an_ipamguard_error() -> None:
    assert issubclass(SourceUnavailable, IpamguardError)


def test_the_context_builds_every_source() -> None:
    ctx = build_context(False, Overrides(socket_url="unix:///tmp/x.sock"), podman_timeout=2.0)
    sources: list[LivenessSource] = ctx.sources()
    api, inflight, conmon, runtime = sources  # the order: tests/liveness/test_source_order.py
    assert isinstance(api, PodmanApiSource)
    assert (api.url, api.timeout) == ("unix:///tmp/x.sock", 2.0)
    assert isinstance(runtime, RuntimeStateSource)
    assert runtime.dirs == ("/run/runc", "/run/crun", "/run/youki")
    assert isinstance(conmon, ConmonSource)
    assert isinstance(inflight, InFlightSource)
    assert [s.name for s in sources] == ["podman-api", "in-flight", "conmon", "runtime-state"]


def test_the_cli_asks_the_podman_command_without_a_socket() -> None:
    from ipamguard.liveness.podman_cli import PodmanCommandSource

    ctx = build_context(False, Overrides(), podman_command=True)
    missing = dataclasses.replace(ctx.paths, socket_url="unix:///nonexistent/podman.sock")
    (api,) = dataclasses.replace(ctx, paths=missing).api_sources()
    assert isinstance(api, PodmanCommandSource)


def test_a_url_named_explicitly_is_the_one_asked() -> None:
    named = Overrides(socket_url="unix:///nonexistent/podman.sock")
    (api,) = build_context(False, named, podman_command=True).api_sources()
    assert isinstance(api, PodmanApiSource)
