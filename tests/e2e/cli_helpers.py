"""Running the CLI in the sandbox, for the e2e tests: never a traceback, one error line."""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
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


class RunRmLoop:
    """``count`` ``podman run -d`` on ``network`` in a thread, each removed right after but
    every fifth (``kept``, still running at the end); every other one asks for a static
    address (172.19.10.100 + i). ``results``: every podman command; ``done``: set when
    the loop ends."""

    def __init__(self, sb: Sandbox, network: str, count: int, image: str) -> None:
        self.sb, self.network, self.count, self.image = sb, network, count, image
        self.results: list[subprocess.CompletedProcess[str]] = []
        self.kept: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive()

    def _loop(self) -> None:
        try:
            for i in range(self.count):
                name = f"churn{i}"
                ip_args = ["--ip", f"172.19.10.{100 + i}"] if i % 2 else []
                run = ("run", "-d", "--name", name, "--network", self.network, *ip_args)
                res = self.sb.podman(*run, self.image, "sleep", "1000", check=False)
                self.results.append(res)
                if i % 5 == 4:
                    self.kept.append(name)
                    continue
                self.results.append(self.sb.podman("rm", "-f", "-t0", name, check=False))
        finally:
            self.done.set()
