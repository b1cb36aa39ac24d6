"""Container bridges from podman and CNI network configs."""

from __future__ import annotations

import json
from pathlib import Path

from ipamguard.doctor.netconfigs import (
    bridges_of_cni_config,
    bridges_of_podman_config,
    family_pattern,
    read_bridge_configs,
)


def test_podman_bridge_networks_only() -> None:
    assert bridges_of_podman_config({"driver": "bridge", "network_interface": "podman1"}) == [
        "podman1"
    ]
    # macvlan names the host's parent interface: never ours to unmanage
    assert bridges_of_podman_config({"driver": "macvlan", "network_interface": "eth0"}) == []
    assert bridges_of_podman_config({"driver": "bridge"}) == []


def test_cni_conflist_and_single_conf() -> None:
    conflist = {"plugins": [{"type": "bridge", "bridge": "cni-podman1"}, {"type": "portmap"}]}
    assert bridges_of_cni_config(conflist) == ["cni-podman1"]
    assert bridges_of_cni_config({"type": "bridge"}) == ["cni0"]  # the plugin's default
    assert bridges_of_cni_config({"type": "macvlan", "master": "eth0"}) == []


def test_read_configs_from_dirs(tmp_path: Path) -> None:
    podman, cni = tmp_path / "networks", tmp_path / "cni"
    podman.mkdir()
    cni.mkdir()
    net = {"name": "web", "driver": "bridge", "network_interface": "podman3"}
    (podman / "web.json").write_text(json.dumps(net))
    (podman / "broken.json").write_text("{")
    (podman / "netavark.lock").write_text("")
    conflist = {"name": "old", "plugins": [{"type": "bridge", "bridge": "cni-podman0"}]}
    (cni / "87-podman.conflist").write_text(json.dumps(conflist))
    found = read_bridge_configs([podman, tmp_path / "missing"], [cni])
    assert found.bridges == {
        "podman3": f"podman network 'web' ({podman / 'web.json'})",
        "cni-podman0": f"CNI network 'old' ({cni / '87-podman.conflist'})",
    }
    assert len(found.unreadable) == 1 and "broken.json" in found.unreadable[0]


def test_family_patterns() -> None:
    assert family_pattern("podman12") == "podman[0-9]*"
    assert family_pattern("cni-podman0") == "cni-podman[0-9]*"
    assert family_pattern("br-0123456789ab") is not None
    assert family_pattern("br-lan") is None
    assert family_pattern("podman") is None
