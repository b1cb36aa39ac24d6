"""Liveness from podman's REST API, external (buildah) containers included.

One ``GET /libpod/containers/json?all=true&external=true`` per observe(), over a
fresh connection (standard library HTTP, see ipamguard.podman_http); then, for each
*exited* container that holds addresses, ``GET /libpod/containers/ID/json``: its
``NetworkSettings.SandboxKey`` says whether podman still has its network set up
(since podman 4.3 a teardown always unmounts the namespace and clears it, even when
freeing the addresses failed). The API only knows the containers of its own storage
root; an external container is listed with state "storage" whether or not
``buildah run`` runs in it (that shows in the runtime state, under another ID).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness.model import EXITED, ContainerInfo
from ipamguard.liveness.podman_entries import container_entry, json_array_items, network_of

DEFAULT_URL = "unix:///run/podman/podman.sock"
LIST_PATH = "/containers/json"
LIST_PARAMS = {"all": True, "external": True}
MAX_DETAIL = 200  # characters of an HTTP error body kept in the message

FAILURE_PREFIX = "podman API at"  # how its failure lines start
SERVER_ERROR_ATTEMPTS = 3  # podman 4.3 answers 500 when a container goes while it lists
FILTER_BATCH = 50  # container IDs per filtered list (a URL stays well under 8 KB)


class _ServerError(SourceUnavailable):
    """podman answered 5xx: often a race with a container being removed; ask again."""


class _Gone(SourceUnavailable):
    """podman answered 404 for one container: it was removed meanwhile."""


class PodmanApiSource:
    """All containers of the podman service at ``url`` (and buildah's), with state."""

    name = "podman-api"

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def observe(self, holders: Collection[str] = ()) -> list[ContainerInfo]:
        only = getattr(holders, "only", None)
        if only is None:
            return self._listed(LIST_PARAMS, holders)
        seen = []  # a focused look: these containers alone (the filter takes full IDs)
        ids = sorted(only)
        for start in range(0, len(ids), FILTER_BATCH):
            batch = {"id": ids[start : start + FILTER_BATCH]}
            seen += self._listed({**LIST_PARAMS, "filters": json.dumps(batch)}, holders)
        return seen

    def _listed(
        self, params: Mapping[str, object], holders: Collection[str]
    ) -> list[ContainerInfo]:
        """The containers of one list answer, each entry decoded and let go in turn
        (podman's entries are a few kB each: the whole list as objects would be the
        daemon's largest peak, and its holes would stay in the heap)."""
        body = self._get_retrying(f"{LIST_PATH}?{urlencode(params)}")
        seen = []
        try:
            for entry in json_array_items(body.decode()):
                seen.append(self._entry(entry, holders))
        except (ValueError, UnicodeDecodeError):
            raise self._fail(_not_a_list(body)) from None
        return [info for info in seen if info is not None]

    def _entry(self, entry: Any, holders: Collection[str]) -> ContainerInfo | None:
        """One list entry; None for an exited holder removed since it was listed."""
        if not isinstance(entry, dict):
            raise self._fail("unexpected answer: a container entry is not an object")
        info = container_entry(entry, self.name)
        if info is None:
            raise self._fail("unexpected answer: a container entry without Id or State")
        if info.state == EXITED and info.id in holders:
            return self._with_network(info)  # None: podman tore it down meanwhile
        return info

    def _with_network(self, info: ContainerInfo) -> ContainerInfo | None:
        try:
            body = self._get_retrying(f"/containers/{quote(info.id, safe='')}/json")
        except _Gone:
            return None
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._fail("the answer is not JSON") from None
        return network_of(info, document)

    def _fail(self, reason: str) -> SourceUnavailable:
        return SourceUnavailable(f"{FAILURE_PREFIX} {self.url}: {reason}")

    def _get_retrying(self, path: str) -> bytes:
        for attempt in range(SERVER_ERROR_ATTEMPTS):
            try:
                return self._get(path)
            except _ServerError:
                if attempt == SERVER_ERROR_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _get(self, path: str) -> bytes:
        """The body of a 200 answer to GET ``path``."""
        import http.client  # not at module level: CLI startup time

        from ipamguard.podman_http import API_PREFIX, connection

        try:
            conn = connection(self.url, self.timeout)
        except ValueError as e:
            raise self._fail(f"cannot use this URL: {one_line(str(e))}") from None
        try:
            conn.request("GET", API_PREFIX + path)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._fail(explain(e, self.timeout)) from None
        finally:
            conn.close()
        if response.status != 200:
            failure = _ServerError if response.status >= 500 else SourceUnavailable
            if response.status == 404 and not path.startswith(LIST_PATH):
                failure = _Gone  # one container's document: it is gone
            raise failure(
                f"{FAILURE_PREFIX} {self.url}: HTTP {response.status}: {error_detail(body)}"
            )
        return body


def _not_a_list(body: bytes) -> str:
    """Why ``body``, which is no JSON list, was refused."""
    try:
        whole = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "the answer is not JSON"
    if isinstance(whole, list):  # json.loads also reads UTF-16 and UTF-32; podman sends UTF-8
        return "the answer is not JSON in UTF-8"
    return f"unexpected answer: a JSON {type(whole).__name__}, not a list"


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
    """One line saying why the API could not be asked (a socket or HTTP error)."""
    import http.client

    checks: list[tuple[type[BaseException], str]] = [
        (FileNotFoundError, "no socket there (is podman.socket or `podman system service` up?)"),
        (ConnectionRefusedError, "connection refused (nothing listens on the socket)"),
        (PermissionError, "permission denied (run as root)"),
        (TimeoutError, f"no answer within {timeout:g} s"),
        (ConnectionResetError, "the service closed the connection without answering"),
        (BrokenPipeError, "the service closed the connection without answering"),
        (http.client.RemoteDisconnected, "the service closed the connection without answering"),
        (http.client.HTTPException, "the answer is not HTTP"),
    ]
    for kind, reason in checks:
        if isinstance(error, kind):
            return reason
    return one_line(f"{type(error).__name__}: {error}")


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
