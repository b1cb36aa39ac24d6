"""Shared fixtures. Keep this small: helpers live in their own modules."""

from __future__ import annotations

import pytest
from oracle_tool import Oracle, build_oracle


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """The Go bbolt oracle (tests/oracle/boltoracle.go), built once per session.

    Skips when Go or bbolt's source is missing; fails instead when CI is set.
    """
    return Oracle(build_oracle())
