"""CNI's host-local files read into the model: both file formats, last_reserved_ip,
malformed names and content, IPv6, orphan networks, and the fence (ABA included)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cni_tree import Tree, cid, make_tree

from ipamguard.ipam.model import Allocation, IpamState
from ipamguard.stores.cni_config import read_cni_configs
from ipamguard.stores.cni_files import CniFence, StoreUnreadable, parse_state, read_files

NET, SUBNET = "net1", "172.19.10.0/24"


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return make_tree(tmp_path)


def state_of(tree: Tree) -> IpamState:
    return tree.store().read().state


def test_both_file_formats_and_last_reserved_ip(tree: Tree) -> None:
    tree.network(NET, SUBNET)
    tree.allocate(NET, "172.19.10.11", cid(1))  # ID\r\neth0 (plugins >= 0.8)
    tree.allocate(NET, "172.19.10.12", cid(2), old=True)  # the ID alone (older plugins)
    (tree.data / NET / "172.19.10.13").write_bytes(cid(3).encode() + b"\n")  # TrimSpace
    state = state_of(tree)
    assert state.malformed == []
    [network] = state.networks
    assert network.name == NET and not network.indexed and network.orphaned is False
    [subnet] = network.subnets
    assert subnet.cidr == SUBNET
    assert subnet.last_ip == "172.19.10.12"  # last_reserved_ip.0 is never an allocation
    assert sorted(subnet.allocations, key=lambda a: a.ip) == [
        Allocation(NET, SUBNET, "172.19.10.11", cid(1)),
        Allocation(NET, SUBNET, "172.19.10.12", cid(2)),
        Allocation(NET, SUBNET, "172.19.10.13", cid(3)),
    ]


def test_dual_stack_ranges_and_ipv6_names(tree: Tree) -> None:
    # podman's --ipv6 network: the IPv6 range set first, then the IPv4 one
    tree.network("net6", "fd00:19::/64", "10.89.0.0/24")
    tree.allocate("net6", "fd00:19::2", cid(1), range_set=0)
    tree.allocate("net6", "10.89.0.2", cid(1), range_set=1)
    (tree.data / "net6" / "fd00:19::7").write_text(f"{cid(2)}\r\neth0")
    (tree.data / "net6" / "FD00:19::8").write_text(f"{cid(3)}\r\neth0")  # not Go's form
    state = state_of(tree)
    [network] = state.networks
    by_subnet = {s.cidr: s for s in network.subnets}
    assert list(by_subnet) == ["fd00:19::/64", "10.89.0.0/24"]
    assert [a.ip for a in by_subnet["fd00:19::/64"].allocations] == ["fd00:19::2", "fd00:19::7"]
    assert by_subnet["fd00:19::/64"].last_ip == "fd00:19::2"
    assert by_subnet["10.89.0.0/24"].last_ip == "10.89.0.2"
    assert [(m.key, m.reason) for m in state.malformed] == [
        ("FD00:19::8", "not an address (nor lock or last_reserved_ip.N)")
    ]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("foo", b"x", "not an address"),
        ("172.19.10.011", cid(1).encode(), "not an address"),
        ("last_reserved_ip.x", b"172.19.10.2", "not last_reserved_ip.N"),
        ("last_reserved_ip.0", b"garbage", "not last_reserved_ip.N"),
        ("172.19.10.20", b"", "holds no container ID"),
        ("172.19.10.20", b"  \r\n ", "holds no container ID"),
        ("172.19.10.20", b"a b\r\neth0", "not 'ID\\r\\nIFNAME'"),
        ("172.19.10.20", b"id\r\neth0\r\nmore", "not 'ID\\r\\nIFNAME'"),
        ("172.19.10.20", b"\xff\xfe", "not ASCII"),
        ("172.19.10.20", b"x" * 5000, "larger than 4096 bytes"),
        ("172.19.11.20", cid(1).encode(), "not an address of the network's ranges"),
        ("172.19.10.255", cid(1).encode(), "not an address of the network's ranges"),
    ],
)
def test_malformed_names_and_content(tree: Tree, name: str, content: bytes, reason: str) -> None:
    tree.network(NET, SUBNET)
    tree.allocate(NET, "172.19.10.2", cid(9))
    (tree.data / NET / name).write_bytes(content)
    state = state_of(tree)
    assert [a.ip for a in state.allocations()] == ["172.19.10.2"]
    [malformed] = state.malformed
    assert malformed.network == NET and reason in malformed.reason


def test_directories_symlinks_and_fifos_are_malformed(tree: Tree) -> None:
    tree.network(NET, SUBNET)
    (tree.data / NET / "172.19.10.30").mkdir()
    (tree.data / NET / "172.19.10.31").symlink_to("/etc/passwd")
    os.mkfifo(tree.data / NET / "172.19.10.32")
    (tree.data / "stray-file").write_text("x")
    reasons = {m.key: m.reason for m in state_of(tree).malformed}
    assert reasons == {
        "172.19.10.30": "a directory",
        "172.19.10.31": "a symlink",
        "172.19.10.32": "not a regular file",
        "stray-file": "not a network directory",
    }


def test_default_network_has_no_config_file(tree: Tree) -> None:
    tree.network("podman", write_config=False)
    tree.allocate("podman", "10.88.0.2", cid(1))
    state = state_of(tree)
    [network] = state.networks
    assert network.orphaned is False
    assert [(s.cidr, len(s.allocations)) for s in network.subnets] == [("10.88.0.0/16", 1)]


def test_a_network_whose_config_is_gone_is_orphaned_if_it_holds_addresses(tree: Tree) -> None:
    tree.network("gone", write_config=False)
    tree.allocate("gone", "172.20.0.5", cid(1))
    tree.network("empty", write_config=False)  # `podman network rm` leaves lock and
    (tree.data / "empty" / "last_reserved_ip.0").write_text("172.21.0.9")  # last_reserved
    state = state_of(tree)
    networks = {n.name: n for n in state.networks}
    assert networks["gone"].orphaned is True
    assert [s.cidr for s in networks["gone"].subnets] == ["0.0.0.0/0"]  # ranges unknown
    assert networks["empty"].orphaned is False  # holds nothing: nothing to release


def test_an_unreadable_config_makes_no_network_orphaned(tree: Tree) -> None:
    tree.network("gone", write_config=False)
    tree.allocate("gone", "172.20.0.5", cid(1))
    (tree.config / "broken.conflist").write_text("{not json")
    [network] = state_of(tree).networks
    assert network.orphaned is False
    configs = read_cni_configs(str(tree.config))
    assert not configs.complete and "broken.conflist" in configs.problems[0]


def test_a_missing_config_dir_makes_no_network_orphaned(tree: Tree) -> None:
    tree.network("gone", write_config=False)
    tree.allocate("gone", "172.20.0.5", cid(1))
    store = tree.store()
    store.config_dir = str(tree.config / "missing")
    [network] = store.read().state.networks
    assert network.orphaned is False


def test_a_missing_data_dir_is_an_empty_store(tree: Tree) -> None:
    store = tree.store()
    store.location = str(tree.data / "missing")
    snapshot = store.read()
    assert snapshot.state.networks == [] and snapshot.fence == CniFence(None)


def test_an_unreadable_data_dir_is_one_line(tree: Tree) -> None:
    (tree.config / "file").write_text("")
    with pytest.raises(StoreUnreadable, match=r"cannot read .*file: Not a directory"):
        read_files(str(tree.config / "file"), 0.1)


# --------------------------------------------------------------------------- the fence


def fence_of(tree: Tree) -> object:
    return tree.store().read().fence


def test_the_fence_is_stable_when_nothing_changes(tree: Tree) -> None:
    tree.network(NET, SUBNET)
    tree.allocate(NET, "172.19.10.11", cid(1))
    first = fence_of(tree)
    assert fence_of(tree) == first
    assert "1 network dir(s), 2 file(s)" in str(first)


def test_the_fence_changes_when_a_file_is_removed_and_made_again_alike(tree: Tree) -> None:
    """ABA: a podman stop + start giving the same address back to the same container."""
    tree.network(NET, SUBNET)
    path = tree.allocate(NET, "172.19.10.11", cid(1))
    content = path.read_bytes()
    before = fence_of(tree)
    path.unlink()
    path.write_bytes(content)  # ext4 gives it the same inode: its generation differs
    after = fence_of(tree)
    assert after != before
    configs = read_cni_configs(str(tree.config))
    assert isinstance(before, CniFence) and isinstance(after, CniFence)
    assert parse_state(after, configs).allocations() == parse_state(before, configs).allocations()


@pytest.mark.parametrize("change", ["last_reserved", "new_network", "new_file", "rewrite"])
def test_the_fence_changes_with_any_change(tree: Tree, change: str) -> None:
    tree.network(NET, SUBNET)
    path = tree.allocate(NET, "172.19.10.11", cid(1))
    before = fence_of(tree)
    if change == "last_reserved":
        (tree.data / NET / "last_reserved_ip.0").write_text("172.19.10.12")
    elif change == "new_network":
        tree.network("other", "172.30.0.0/24")
    elif change == "new_file":
        tree.allocate(NET, "172.19.10.12", cid(2))
    else:
        with open(path, "r+b") as f:  # same inode, same size
            f.write(b"f")
    assert fence_of(tree) != before
