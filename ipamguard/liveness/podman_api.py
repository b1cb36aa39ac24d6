"""Liveness from podman's REST API, external (buildah) containers included.

One ``GET /libpod/containers/json?all=true&external=true`` per observe(), over a
fresh connection (standard library HTTP, see ipamguard.podman_http). The API only
knows the containers of its own storage root; an external container is listed with
state "storage" whether or not ``buildah run`` runs in it (that shows in the
runtime state, under another ID).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness.model import ContainerInfo

DEFAULT_URL = "unix:///run/podman/podman.sock"
LIST_PATH = "/containers/json"
LIST_PARAMS = {"all": True, "external": True}
MAX_DETAIL = 200  # characters of an HTTP error body kept in the message


FAILURE_PREFIX = "podman API at"  # how its failure lines start
SERVER_ERROR_ATTEMPTS = 3  # podman 4.3 answers 500 when a container goes while it lists


class _ServerError(SourceUnavailable):
    """podman answered 5xx: often a race with a container being removed; ask again."""


class PodmanApiSource:
    """All containers of the podman service at ``url`` (and buildah's), with state."""

    name = "podman-api"

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def observe(self) -> list[ContainerInfo]:
        for attempt in range(SERVER_ERROR_ATTEMPTS):
            try:
                entries = self._list_containers()
                break
            except _ServerError:
                if attempt == SERVER_ERROR_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return [self._parse_entry(entry) for entry in entries]

    def _fail(self, reason: str) -> SourceUnavailable:
        return SourceUnavailable(f"{FAILURE_PREFIX} {self.url}: {reason}")

    def _list_containers(self) -> list[Any]:
        import http.client  # not at module level: CLI startup time
        import json

        from ipamguard.podman_http import API_PREFIX, connection

        try:
            conn = connection(self.url, self.timeout)
        except ValueError as e:
            raise self._fail(f"cannot use this URL: {one_line(str(e))}") from None
        try:
            conn.request("GET", f"{API_PREFIX}{LIST_PATH}?{urlencode(LIST_PARAMS)}")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._fail(explain(e, self.timeout)) from None
        finally:
            conn.close()
        if response.status != 200:
            failure = _ServerError if response.status >= 500 else SourceUnavailable
            raise failure(
                f"{FAILURE_PREFIX} {self.url}: HTTP {response.status}: {error_detail(body)}"
            )
        try:
            data = json.loads(body)
        except ValueError:
            raise self._fail("the answer is not JSON") from None
        if not isinstance(data, list):
            raise self._fail(f"unexpected answer: a JSON {type(data).__name__}, not a list")
        return data

    def _parse_entry(self, entry: Any) -> ContainerInfo:
        if not isinstance(entry, dict):
            raise self._fail("unexpected answer: a container entry is not an object")
        cid, state, names = entry.get("Id"), entry.get("State"), entry.get("Names")
        if not isinstance(cid, str) or not cid or not isinstance(state, str):
            raise self._fail("unexpected answer: a container entry without Id or State")
        name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else ""
        return ContainerInfo(cid, state.lower(), self.name, name)


def error_detail(body: bytes) -> str:
    """podman's error message (JSON ``message``), else the body, on one short line."""
    import json

    text = body.decode(errors="replace")
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    return one_line(message if isinstance(message, str) and message else text)


def explain(error: BaseException, timeout: float) -> str:
    """One line saying why the API could not be asked (socket or HTTP errors).

    The most telling exception in the chain (cause, context) decides.
    """
    import http.client

    chain = list(_chain(error))
    for e in chain:
        status = getattr(e, "status_code", None)
        if isinstance(status, int):
            detail = getattr(e, "explanation", None) or str(e)
            return f"HTTP {status}: {one_line(str(detail))}"
    checks: list[tuple[type[BaseException] | str, str]] = [
        (FileNotFoundError, "no socket there (is podman.socket or `podman system service` up?)"),
        (ConnectionRefusedError, "connection refused (nothing listens on the socket)"),
        (PermissionError, "permission denied (run as root)"),
        ("Timeout", f"no answer within {timeout:g} s"),
        (TimeoutError, f"no answer within {timeout:g} s"),
        (ConnectionResetError, "the service closed the connection without answering"),
        (BrokenPipeError, "the service closed the connection without answering"),
        (http.client.HTTPException, "the answer is not HTTP"),
        (ValueError, "the answer is not JSON"),
    ]
    for kind, reason in checks:
        for e in chain:
            if isinstance(kind, str) and kind in type(e).__name__:
                return reason
            if isinstance(kind, type) and isinstance(e, kind):
                return reason
    inner = chain[-1]
    return one_line(f"{type(inner).__name__}: {inner}")


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
