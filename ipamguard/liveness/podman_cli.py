"""Liveness from the ``podman`` command, for hosts without podman's API socket.

Most hosts never enabled ``podman.socket``. The command asks the same libpod as
the API would (``podman ps --all --external --format json``, then ``podman
inspect`` for exited containers that hold addresses), with the same storage
configuration as a plain ``podman`` run by the same user. Slower than the API
(a process per call), so the daemon keeps the API (it needs the event stream).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Collection, Sequence
from typing import Any

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness.model import EXITED, ContainerInfo
from ipamguard.liveness.podman_entries import container_entry, network_of

FAILURE_PREFIX = "the podman command"
MAX_DETAIL = 200


class PodmanCommandSource:
    """All containers ``podman ps --all --external`` lists, with state (see module doc)."""

    name = "podman-api"  # the same libpod answers: the verdict treats both alike
    shown = "podman command"

    def __init__(self, podman: Sequence[str] = ("podman",), timeout: float = 30.0) -> None:
        self.podman = tuple(podman)
        self.timeout = timeout

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        entries = self._json(["ps", "--all", "--external", "--format", "json"])
        if not isinstance(entries, list):
            raise self._fail("`podman ps` did not print a JSON list")
        seen = []
        for entry in entries:
            info = container_entry(entry, self.name)
            if info is None:
                raise self._fail("`podman ps` printed an entry without Id or State")
            seen.append(info)
        exited = [i.id for i in seen if i.state == EXITED and i.id in holders]
        if not exited:
            return seen
        documents = self._inspect(exited)
        return [network_of(i, documents[i.id]) if i.id in documents else i for i in seen]

    def _inspect(self, ids: list[str]) -> dict[str, Any]:
        """Inspect documents by ID; a container removed meanwhile is simply missing."""
        found: dict[str, Any] = {}
        for start in range(0, len(ids), 100):  # keep argv short
            batch = ids[start : start + 100]
            docs = self._json(["inspect", "--type", "container", "--format", "json", *batch],
                              missing_ok=True)  # fmt: skip
            for doc in docs if isinstance(docs, list) else []:
                if isinstance(doc, dict) and isinstance(doc.get("Id"), str):
                    found[doc["Id"]] = doc
        return found

    def _fail(self, reason: str) -> SourceUnavailable:
        return SourceUnavailable(f"{FAILURE_PREFIX} ({' '.join(self.podman)}): {reason}")

    def _json(self, args: list[str], missing_ok: bool = False) -> Any:
        env = dict(os.environ)
        env.pop("CONTAINER_HOST", None)  # this machine's podman, never a remote one
        env.pop("CONTAINER_CONNECTION", None)
        try:
            done = subprocess.run(
                [*self.podman, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self.timeout,
                env=env,
                check=False,
            )
        except FileNotFoundError:
            raise self._fail("not installed") from None
        except subprocess.TimeoutExpired:
            raise self._fail(f"no answer within {self.timeout:g} s") from None
        except OSError as error:
            raise self._fail(error.strerror or str(error)) from None
        if done.returncode != 0 and not (missing_ok and done.stdout.strip()):
            detail = " ".join(done.stderr.decode(errors="replace").split())[:MAX_DETAIL]
            if missing_ok and "no such container" in detail.lower():
                return []
            raise self._fail(f"`podman {args[0]}` exited {done.returncode}: {detail}")
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise self._fail(f"`podman {args[0]}` did not print JSON") from None
