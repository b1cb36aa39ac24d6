"""podman's container list and inspect documents, as the API and ``podman`` print them.

``GET /libpod/containers/json`` and ``podman ps --format json`` give the same
entries (``Id``, ``State``, ``Names``); ``GET /libpod/containers/ID/json`` and
``podman inspect --format json`` the same document, whose
``NetworkSettings.SandboxKey`` is the container's network namespace while podman
has its network set up, and empty once it was torn down.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from sys import intern
from typing import Any

from ipamguard.liveness.model import NETWORK_SET_UP, NETWORK_TORN_DOWN, ContainerInfo

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


def _skip_space(text: str, at: int) -> int:
    """The index of the first character at or after ``at`` that is not whitespace."""
    match = _SPACE.match(text, at)
    return at if match is None else match.end()  # the pattern matches anywhere


def json_array_items(text: str) -> Iterator[Any]:
    """The items of the JSON array ``text``, decoded one at a time: a list of 65,000
    containers is never held as 65,000 dicts at once, only as what each gives. Raises
    ValueError (json.JSONDecodeError) where ``text`` stops being a JSON array, after
    the items before: a caller keeps nothing of a list that did not end well."""
    at = _skip_space(text, 0)
    if not text.startswith("[", at):
        raise ValueError("not a JSON array")
    at = _skip_space(text, at + 1)
    if text.startswith("]", at):
        at += 1
    else:
        while True:
            item, at = _DECODER.raw_decode(text, at)
            yield item
            at = _skip_space(text, at)
            if text.startswith(",", at):
                at = _skip_space(text, at + 1)
                continue
            if not text.startswith("]", at):
                raise json.JSONDecodeError("expected ',' or ']'", text, at)
            at += 1
            break
    if _skip_space(text, at) != len(text):
        raise json.JSONDecodeError("extra data", text, at)


def container_entry(entry: Any, source: str) -> ContainerInfo | None:
    """One list entry as a ContainerInfo; None if it lacks an Id or a State."""
    if not isinstance(entry, dict):
        return None
    cid, state, names = entry.get("Id"), entry.get("State"), entry.get("Names")
    if not isinstance(cid, str) or not cid or not isinstance(state, str):
        return None
    name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else ""
    networks = entry.get("Networks")
    connected = None
    if isinstance(networks, list) and all(isinstance(n, str) for n in networks):
        connected = tuple(networks)
    # interned: the ID is the one the store's model holds (an entry of a container that
    # holds addresses adds no copy), and the few states are shared by every entry
    return ContainerInfo(intern(cid), intern(state.lower()), source, name, networks=connected)


def network_of(info: ContainerInfo, document: Any) -> ContainerInfo:
    """``info`` with what an inspect document says of its network namespace.

    A document of another shape leaves the network unknown (never "torn down").
    """
    settings = document.get("NetworkSettings") if isinstance(document, dict) else None
    key = settings.get("SandboxKey") if isinstance(settings, dict) else None
    if not isinstance(key, str) or document.get("Id") != info.id:
        return info
    network = NETWORK_SET_UP if key else NETWORK_TORN_DOWN
    return dataclasses.replace(info, network=network, sandbox=key)
