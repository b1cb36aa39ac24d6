"""The names of podman's networks, from its network config directory."""

from __future__ import annotations

import json
import os
from typing import Any

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
    configs = network_configs(network_dir)
    if configs is None:
        return None
    return {DEFAULT_NETWORK, default_network} | {name for name, _ in configs}


def network_configs(network_dir: str) -> list[tuple[str, dict[str, Any] | None]] | None:
    """(name, parsed config) of every ``NAME.json`` in ``network_dir``, by file name;
    None if the directory is missing or cannot be read. The name is the config's own,
    else the file's; the config is None where the file cannot be read or parsed as a
    JSON object."""
    try:
        entries = sorted(e for e in os.listdir(network_dir) if e.endswith(".json"))
    except OSError:
        return None
    configs: list[tuple[str, dict[str, Any] | None]] = []
    for entry in entries:
        try:
            with open(os.path.join(network_dir, entry), encoding="utf-8") as config_file:
                config = json.load(config_file)
        except (OSError, ValueError):
            config = None
        if not isinstance(config, dict):
            config = None
        name = config.get("name") if config is not None else None
        configs.append((name if isinstance(name, str) and name else entry[: -len(".json")], config))
    return configs
