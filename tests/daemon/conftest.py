"""Fixtures of the daemon's tests: the e2e sandbox (real podman, journald) and paths.

``sandbox`` is the harness of tests/e2e (sandbox.py): a real rootful podman and,
on request, a real journald in private namespaces. Tests using it are marked
``e2e``; they are skipped where a sandbox cannot run, and fail instead under $CI.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"


def _sandbox_module() -> Any:
    if str(E2E) not in sys.path:
        sys.path.insert(0, str(E2E))
    import sandbox

    return sandbox


def require_sandbox() -> None:
    _sandbox_module().require_sandbox()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "sandbox" in getattr(item, "fixturenames", ()) and HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def sandbox() -> Iterator[Any]:
    require_sandbox()
    with _sandbox_module().Sandbox() as sb:
        yield sb
