"""Helpers of the packaging tests: required tools, running commands, the unit's text.

Where a tool is missing a test is skipped, but fails instead when $CI is set, so
that CI never skips a packaging check silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "ipamguard.service"
CATALOG = REPO / "systemd" / "ipamguard.catalog"
DEFAULT_CONFIG = REPO / "packaging" / "ipamguard.toml"
CACHE = REPO / "tests" / ".cache"
# Debian's own tools and Python: not a pyenv shim or a venv earlier in PATH
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unavailable(reason: str) -> NoReturn:
    """Skip (locally) or fail (with $CI set) a test whose tools are missing."""
    if os.environ.get("CI"):
        pytest.fail(f"packaging tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t, path=SYSTEM_PATH) is None]
    if missing:
        unavailable(f"missing tools: {', '.join(missing)}")


def require_debs(*packages: str) -> None:
    """Debian packages that must be installed (dpkg-query), e.g. build dependencies."""
    require_tools("dpkg-query")
    missing = []
    for package in packages:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f", "${db:Status-Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.stdout != "installed":
            missing.append(package)
    if missing:
        unavailable(f"missing Debian packages: {' '.join(missing)}")


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command (system PATH), output captured; a failure shows everything."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    full_env.update(PATH=SYSTEM_PATH, **(env or {}))
    result = subprocess.run(
        [os.fspath(a) for a in argv],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))}: exit {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result


def pyproject_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match, "no version in pyproject.toml"
    return match.group(1)


def unit_for(exec_start: str, unit_text: str | None = None) -> str:
    """The unit's text with ExecStart's program replaced (as install.sh does)."""
    text = UNIT.read_text() if unit_text is None else unit_text
    new, count = re.subn(r"^ExecStart=\S+ ", f"ExecStart={exec_start} ", text, count=1, flags=re.M)
    assert count == 1, "the unit has no ExecStart="
    return new


def wheelhouse() -> Path:
    """tests/.cache/wheelhouse-HASH: ipamguard's dependencies and setuptools as files
    for ``pip install --no-index --find-links``, downloaded once per pyproject.toml
    with the interpreter install.sh uses (python3 on the system PATH)."""
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    house = CACHE / f"wheelhouse-{digest}"
    if house.is_dir():
        return house
    python = shutil.which("python3", path=SYSTEM_PATH)
    if python is None:
        unavailable("python3 is missing")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="wheelhouse-tmp-") as tmp:
        work = Path(tmp)
        run([python, "-m", "venv", work / "venv"])
        # only the metadata matters: a stand-in package with the real pyproject.toml
        (work / "src" / "ipamguard").mkdir(parents=True)
        (work / "src" / "ipamguard" / "__init__.py").write_text("")
        for name in ("pyproject.toml", "README.md"):
            if (REPO / name).exists():
                shutil.copy(REPO / name, work / "src" / name)
        result = run(
            [work / "venv" / "bin" / "python", "-m", "pip", "download", "--quiet",
             "--dest", work / "house", work / "src", "setuptools>=61", "wheel"],
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            unavailable(f"cannot download ipamguard's dependencies:\n{result.stderr[-2000:]}")
        with contextlib.suppress(OSError):  # another session may have been faster
            os.rename(work / "house", house)
    return house
