"""Running the CLI in the sandbox, for the e2e tests: never a traceback, one error line."""

from __future__ import annotations

import json
import shlex
import subprocess
from typing import Any

import pytest
from sandbox import Sandbox


def show(res: subprocess.CompletedProcess[str]) -> str:
    out = f"{shlex.join(res.args)}\nrc={res.returncode}\n"
    return out + f"--- stdout\n{res.stdout}--- stderr\n{res.stderr}"


def ig(sb: Sandbox, *args: str, rc: int | None = None) -> subprocess.CompletedProcess[str]:
    """``ipamguard ARGS`` in the sandbox; never a traceback; errors are one clear line."""
    res = sb.ipamguard(*args, check=False, timeout=60)
    assert "Traceback" not in res.stderr, show(res)
    if res.returncode == 2:
        errors = [line for line in res.stderr.splitlines() if line.startswith("ipamguard: error:")]
        assert len(errors) == 1, show(res)
        assert res.stderr.rstrip("\n").splitlines()[-1] == errors[0], show(res)
    if rc is not None:
        assert res.returncode == rc, show(res)
    return res


def as_json(res: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"not JSON:\n{show(res)}", pytrace=False)
