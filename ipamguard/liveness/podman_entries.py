"""podman's container list and inspect documents, as the API and ``podman`` print them.

``GET /libpod/containers/json`` and ``podman ps --format json`` give the same
entries (``Id``, ``State``, ``Names``); ``GET /libpod/containers/ID/json`` and
``podman inspect --format json`` the same document, whose
``NetworkSettings.SandboxKey`` is the container's network namespace while podman
has its network set up, and empty once it was torn down.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ipamguard.liveness.model import NETWORK_SET_UP, NETWORK_TORN_DOWN, ContainerInfo


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
    return ContainerInfo(cid, state.lower(), source, name, networks=connected)


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
