"""Fixtures for end-to-end tests against a real, sandboxed podman.

``sandbox``: a fresh ``Sandbox`` (see sandbox.py) per test, with the busybox image
``localhost/bb`` imported; about 0.3 s to start and 0.01 s to tear down. Every test
of this directory that uses it runs twice, once per podman flavour: ``podman4.3``
(the host's rootful podman 4.3) and ``podman5.4`` (rootful podman 5.4 from a Debian
13 root, built once into tests/.cache/trixie, about a minute); ``pytest -k podman5.4``
selects one. ``rootless_sandbox``: a 5.4 sandbox with a user whose podman runs
rootless (``sb.podman_user(...)``). Tests that use them are marked ``e2e``
automatically. Where a sandbox cannot run (not root, podman/unshare/nsenter or
debootstrap missing) they are skipped, but fail when $CI is set, so that CI never
skips them silently.

Other directories (tests/liveness) re-export ``sandbox``: they get the 4.3 flavour,
since the parametrization is done by this directory's pytest_generate_tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sandbox import FLAVOURS, TRIXIE_FLAVOUR, Sandbox, require_sandbox

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if ("sandbox" in fixtures or "rootless_sandbox" in fixtures) and HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every flavour for tests of this directory that use ``sandbox``."""
    if "sandbox" in metafunc.fixturenames and HERE in metafunc.definition.path.parents:
        metafunc.parametrize(
            "sandbox", FLAVOURS, ids=[f"podman{f}" for f in FLAVOURS], indirect=True
        )


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    flavour = getattr(request, "param", "4.3")
    require_sandbox(flavour)
    with Sandbox(podman=flavour) as sb:
        yield sb


@pytest.fixture
def rootless_sandbox() -> Iterator[Sandbox]:
    """A podman 5.4 sandbox whose ``rootless`` user (uid 1000) has the image too."""
    require_sandbox(TRIXIE_FLAVOUR)
    with Sandbox(podman=TRIXIE_FLAVOUR) as sb:
        sb.enable_rootless()
        yield sb
