"""The names of podman's networks, from its network config directory."""

from __future__ import annotations

import json
import os

# podman's default network lives in memory unless changed; it has no file.
DEFAULT_NETWORK = "podman"


def podman_network_names(
    network_dir: str, default_network: str = DEFAULT_NETWORK
) -> set[str] | None:
    """Names of the networks configured in ``network_dir`` (plus podman's default,
    ``default_network`` in containers.conf: it has no file unless changed).

    None when the directory is missing or cannot be read: then no network is
    judged orphaned (a typo in a path must never make networks look deleted).
    A config that cannot be parsed still counts, under its file name, so that a
    damaged config never makes its network look orphaned.
    """
    try:
        entries = os.listdir(network_dir)
    except OSError:
        return None
    names = {DEFAULT_NETWORK, default_network}
    for entry in entries:
        if not entry.endswith(".json"):
            continue
        path = os.path.join(network_dir, entry)
        try:
            with open(path, encoding="utf-8") as config_file:
                config = json.load(config_file)
            name = config.get("name") if isinstance(config, dict) else None
        except (OSError, ValueError):
            name = None
        names.add(name if isinstance(name, str) and name else entry[: -len(".json")])
    return names
