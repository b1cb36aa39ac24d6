"""Liveness from podman's REST API (podman-py), external (buildah) containers included.

One ``GET /libpod/containers/json?all=true&external=true`` per observe(), through
podman-py's API client: ``ContainersManager.list()`` does not pass ``external``
(podman-py 5.8). The API only knows the containers of its own storage root; an
external container is listed with state "storage" whether or not ``buildah run``
runs in it (that shows in the runtime state, under another ID).

podman is imported inside observe(): the CLI starts without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ipamguard.errors import SourceUnavailable
from ipamguard.liveness.model import ContainerInfo

DEFAULT_URL = "unix:///run/podman/podman.sock"
LIST_PATH = "/containers/json"
LIST_PARAMS = {"all": True, "external": True}
MAX_DETAIL = 200  # characters of an HTTP error body kept in the message


FAILURE_PREFIX = "podman API at"  # how its failure lines start


class PodmanApiSource:
    """All containers of the podman service at ``url`` (and buildah's), with state."""

    name = "podman-api"

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def observe(self) -> list[ContainerInfo]:
        return [self._parse_entry(entry) for entry in self._list_containers()]

    def _fail(self, reason: str) -> SourceUnavailable:
        return SourceUnavailable(f"{FAILURE_PREFIX} {self.url}: {reason}")

    def _list_containers(self) -> list[Any]:
        try:
            import http.client  # loaded by podman anyway: not at module level (startup time)

            import podman
            from podman.errors import PodmanError
        except ImportError:
            raise self._fail("podman-py is not installed (pip install podman)") from None
        try:
            client = podman.PodmanClient(base_url=self.url, timeout=self.timeout)
        except (ValueError, OSError, PodmanError) as e:  # e.g. an unsupported scheme
            raise self._fail(f"cannot use this URL: {one_line(str(e))}") from None
        try:
            with client:
                response = client.api.get(LIST_PATH, params=LIST_PARAMS)
                response.raise_for_status()
                data = response.json()
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise self._fail(explain(e, self.timeout)) from None
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


def explain(error: BaseException, timeout: float) -> str:
    """One line saying why the API could not be asked, from podman-py/requests errors.

    They wrap each other (APIError < requests < urllib3 < OSError): the most telling
    exception in the chain decides.
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
