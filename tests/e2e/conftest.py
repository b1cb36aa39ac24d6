"""Fixtures for end-to-end tests against a real, sandboxed rootful podman.

``sandbox``: a fresh ``Sandbox`` (see sandbox.py) per test, with the busybox image
``localhost/bb`` imported; about 0.3 s to start and 0.01 s to tear down. Tests that
use it are marked ``e2e`` automatically. Where the sandbox cannot run (not root,
podman/unshare/nsenter missing) they are skipped, but fail when $CI is set, so that
CI never skips them silently.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sandbox import Sandbox, require_sandbox


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if "sandbox" in getattr(item, "fixturenames", ()) and here in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    require_sandbox()
    with Sandbox() as sb:
        yield sb
