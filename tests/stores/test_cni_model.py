"""What the CNI store needs from the model and the reconciler: a network without an
ids index (``indexed`` False) and a store that says itself which networks are gone
(``orphaned``); and what it needs from podman's configuration: its paths, locks and
which stores a podman has (Context.stores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ipamguard.context import Context, Overrides, build_context
from ipamguard.ipam.model import Allocation, IpamState, Network, Subnet
from ipamguard.ipam.paths import PodmanPaths, cni_in_use, rootful_paths, rootless_paths
from ipamguard.kinds import DANGLING, LEAKED, ORPHAN_NETWORK
from ipamguard.liveness.model import ContainerInfo, LivenessSnapshot, merge
from ipamguard.podman_config import read_setup
from ipamguard.reconcile import reconcile

A, B = "a" * 64, "b" * 64


def seen(running: tuple[str, ...] = ()) -> LivenessSnapshot:
    observations = tuple(ContainerInfo(c, "running", "podman-api") for c in running)
    return LivenessSnapshot(0.0, merge(observations), (), observations)


def cni_network(name: str, orphaned: bool | None = False) -> Network:
    subnet = Subnet("172.19.10.0/24", allocations=[
        Allocation(name, "172.19.10.0/24", "172.19.10.2", A),
        Allocation(name, "172.19.10.0/24", "172.19.10.3", B),
    ])  # fmt: skip
    return Network(name, [subnet], [], indexed=False, orphaned=orphaned)


def findings(network: Network, names: set[str] | None, live: tuple[str, ...] = ()) -> list[str]:
    result = reconcile(IpamState(0, [network]), seen(live), names, 0.0, {}, 0.0, "cni")
    assert all(f.store == "cni" for f in result.findings)
    return sorted(f"{f.kind} {f.ip} {'; '.join(f.evidence)}" for f in result.findings)


def test_an_unindexed_allocation_is_consistent_alone() -> None:
    # netavark's ids index does not exist in CNI: a live holder is no "dangling"
    assert findings(cni_network("net1"), None, live=(A, B)) == []
    [leak] = findings(cni_network("net1"), None, live=(A,))
    assert leak.startswith(f"{LEAKED} 172.19.10.3") and "ids entry" not in leak
    indexed = cni_network("net1")
    indexed.indexed = True  # the same files seen as netavark's: every key dangles
    assert [f.split()[0] for f in findings(indexed, None, live=(A, B))] == [DANGLING, DANGLING]


def test_the_store_says_which_networks_are_gone() -> None:
    # podman's netavark network names do not name CNI networks: the store's word wins
    assert [f.split()[0] for f in findings(cni_network("net1"), {"podman"}, live=(A, B))] == []
    gone = findings(cni_network("net1", orphaned=True), {"net1"}, live=())
    assert [f.split()[0] for f in gone] == [ORPHAN_NETWORK]
    # None: the caller's names decide, as for netavark
    assert findings(cni_network("x", orphaned=None), {"podman"})[0].startswith(ORPHAN_NETWORK)


# --------------------------------------------------------------------------- paths


def test_rootful_cni_paths_and_locks(tmp_path: Path) -> None:
    setup = read_setup(False, 0, {}, "/root", etc=str(tmp_path))
    assert setup.cni_config_dir == f"{tmp_path}/cni/net.d"
    assert setup.cni_data_dir == "/var/lib/cni/networks"
    # podman >= 4.4 in /run/lock, podman 4.0-4.3 in the config dir: both, in this order
    assert setup.cni_locks == ("/run/lock/podman-cni.lock", f"{tmp_path}/cni/net.d/cni.lock")
    assert setup.default_subnet == "10.88.0.0/16"
    paths = rootful_paths({})
    assert paths.cni_data_dir == "/var/lib/cni/networks"


def test_rootless_cni_lives_in_the_rootless_netns() -> None:
    paths = rootless_paths(1000, {"XDG_RUNTIME_DIR": "/run/user/1000"}, "/home/u")
    assert paths.cni_config_dir == "/home/u/.config/cni/net.d"
    assert paths.cni_locks == ("/home/u/.config/cni/net.d/cni.lock",)
    # libpod's rootless-netns mounts $tmp_dir/rootless-netns/var/lib/cni on /var/lib/cni
    assert paths.cni_data_dir == "/run/user/1000/libpod/tmp/rootless-netns/var/lib/cni/networks"


def test_containers_conf_moves_cni_configs_tmp_dir_and_default_subnet(tmp_path: Path) -> None:
    conf = tmp_path / "containers.conf"
    conf.write_text(
        '[network]\nnetwork_backend = "cni"\nnetwork_config_dir = "/srv/cni"\n'
        'default_subnet = "10.99.0.0/16"\n[engine]\ntmp_dir = "/srv/tmp"\n'
    )
    env = {"CONTAINERS_CONF": str(conf), "XDG_RUNTIME_DIR": "/run/user/7"}
    paths = rootless_paths(7, env, "/home/u")
    assert paths.network_backend == "cni"
    assert paths.cni_config_dir == "/srv/cni" and paths.cni_locks == ("/srv/cni/cni.lock",)
    assert paths.cni_data_dir == "/srv/tmp/rootless-netns/var/lib/cni/networks"
    assert paths.default_subnet == "10.99.0.0/16"


def test_network_dir_override_leaves_cni_configs_alone() -> None:
    """The daemon's [paths] network_dir is always filled (netavark's default): it must not
    move CNI's configs, which only containers.conf's network_config_dir moves."""
    paths = PodmanPaths("/x.db", "/n", (), "unix:///s", (), "/b", network_backend="cni")
    moved = paths.with_network_dir("/etc/containers/networks")
    assert moved.cni_config_dir == "/etc/cni/net.d"
    assert moved.cni_locks == ("/run/lock/podman-cni.lock", "/etc/cni/net.d/cni.lock")


@pytest.mark.parametrize(
    ("backend", "db", "cni_dir", "kinds"),
    [
        ("cni", False, True, ["cni"]),
        ("cni", True, True, ["netavark", "cni"]),  # ipam.db of another storage root
        ("cni", False, False, ["cni"]),  # no container yet
        ("netavark", True, True, ["netavark"]),  # CNI files left from before: not podman's
        (None, False, True, ["netavark", "cni"]),  # podman's choice not known: both
        (None, False, False, ["netavark"]),
    ],
)
def test_stores_follow_the_backend(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str | None,
    db: bool,
    cni_dir: bool,
    kinds: list[str],
) -> None:
    monkeypatch.setattr("ipamguard.context.is_offline", lambda paths: False)
    paths = PodmanPaths(
        str(tmp_path / "ipam.db"), str(tmp_path / "networks"), (), "unix:///s", (),
        str(tmp_path / "b"), network_backend=backend, cni_data_dir=str(tmp_path / "cni"),
        cni_config_dir=str(tmp_path / "net.d"),
    )  # fmt: skip
    if db:
        (tmp_path / "ipam.db").touch()
    if cni_dir:
        (tmp_path / "cni").mkdir()
    assert cni_in_use(paths) == ("cni" in kinds)
    stores = Context(paths).stores()
    assert [s.kind for s in stores] == kinds
    for store in stores:
        locks = paths.cni_locks if store.kind == "cni" else paths.network_locks
        assert store.network_locks == locks


def test_an_offline_copy_of_ipam_db_leaves_the_live_cni_files_alone(tmp_path: Path) -> None:
    ctx = build_context(False, Overrides(db=str(tmp_path / "copy.db")))
    paths = ctx.paths
    cni = PodmanPaths(**{**paths.__dict__, "network_backend": None,
                         "cni_data_dir": str(tmp_path)})  # fmt: skip
    assert [s.kind for s in Context(cni).stores()] == ["netavark"]


def test_the_cni_store_probes_cni_bridges_rootful_only(tmp_path: Path) -> None:
    paths = PodmanPaths("/x.db", "/n", (), "unix:///s", (), "/b", network_backend="cni")
    assert Context(paths).store("cni").prober is not None
    rootless = PodmanPaths(**{**paths.__dict__, "rootless": True, "uid": os.getuid()})
    assert Context(rootless).store("cni").prober is None
    assert Context(paths).store("netavark").prober is None  # the caller's
