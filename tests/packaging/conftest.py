"""Fixtures of the packaging tests: the unit, install.sh, the Debian package, the RPM spec.

Helpers live in pkgtools.py. ``packaging`` marks the slow tests (a package build,
a pip install, a booted systemd).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pkgtools import REPO, require_debs, require_tools, run


@pytest.fixture
def stub_program(tmp_path: Path) -> Path:
    """An executable standing in for /usr/bin/ipamguard (verify wants ExecStart to exist)."""
    program = tmp_path / "bin" / "ipamguard"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return program


@pytest.fixture(scope="session")
def built_deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """packaging/build-deb.sh's output directory (the .deb and ipamguard.lintian)."""
    require_tools("dpkg-buildpackage", "dh", "lintian", "help2man", "python3")
    require_debs(
        "debhelper",
        "dh-python",
        "pybuild-plugin-pyproject",
        "python3-all",
        "python3-setuptools",
        "python3-dbus-next",
        "python3-structlog",
        "python3-pyinotify",
        "python3-xxhash",
    )
    out = tmp_path_factory.mktemp("deb")
    run(["bash", REPO / "packaging" / "build-deb.sh", out], timeout=900)
    yield out
