"""A typed model of netavark's ipam.db, read through the bolt API only.

Layout (containers/common libnetwork/netavark/ipam.go):
  NETWORK (bucket)
    SUBNET CIDR (bucket): IP as 4/16 bytes -> container ID; "lastIP" -> IP bytes
    "ids" (bucket): container ID -> JSON array of IP strings
Anything netavark could not have written is kept as a ``Malformed`` entry rather
than dropped, so that nothing in the file goes unseen.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import operator
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from sys import intern
from typing import Any

from ipamguard.bolt import Bucket, Tx

IDS_BUCKET = b"ids"
LAST_IP_KEY = b"lastIP"


@dataclass(frozen=True, slots=True)
class Allocation:
    """One IP key: this address of this subnet is held by this container ID."""

    network: str
    subnet: str
    ip: str
    container_id: str


@dataclass(frozen=True, slots=True)
class IdsEntry:
    """One entry of a network's ``ids`` bucket: the IPs a container holds there."""

    network: str
    container_id: str
    ips: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A key or value that netavark could not have written."""

    network: str
    subnet: str | None
    key: str  # printable (hex when not text)
    reason: str


@dataclass(slots=True)
class Subnet:
    cidr: str
    last_ip: str | None = None
    allocations: list[Allocation] = field(default_factory=list)


@dataclass(slots=True)
class Network:
    name: str
    subnets: list[Subnet] = field(default_factory=list)
    ids: list[IdsEntry] = field(default_factory=list)
    # the store keeps an index of who holds what (netavark's ``ids`` bucket); CNI's
    # host-local files have none, so their allocations never lack an index entry
    indexed: bool = True
    # the store's own word on whether the network's config is gone (CNI reads its
    # .conflist files); None: the caller's list of podman's networks decides
    orphaned: bool | None = None


@dataclass(slots=True)
class IpamState:
    """Everything in ipam.db as of one committed transaction."""

    txid: int
    networks: list[Network] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    index: PageCache | None = field(default=None, compare=False, repr=False)
    index_read: int = field(default=0, compare=False, repr=False)

    def allocations(self) -> list[Allocation]:
        return [a for n in self.networks for s in n.subnets for a in s.allocations]

    def ids_entries(self) -> list[IdsEntry]:
        return [e for n in self.networks for e in n.ids]

    def network(self, name: str) -> Network | None:
        return next((n for n in self.networks if n.name == name), None)

    def held_by(self, containers: Iterable[str]) -> list[Allocation | IdsEntry] | None:
        """The allocations and ids entries of ``containers``, found without a look at
        the others' (the page cache's index of the read that gave this state), in the
        store's order; None if this state has no index (read without a page cache, or
        the cache has read again since)."""
        if self.index is None or self.index.reads != self.index_read:
            return None
        held = self.index.holders
        found = [e for cid in containers for e in held.get(cid, ())]
        order = {n.name: i for i, n in enumerate(self.networks)}
        return sorted(found, key=lambda e: (order.get(e.network, -1), _place(e)))

    def holders(self) -> frozenset[str]:
        """Every container ID that holds an address or an ids entry."""
        held = {a.container_id for a in self.allocations()}
        held.update(e.container_id for e in self.ids_entries())
        return frozenset(held)


_CONTAINER_ID = operator.attrgetter("container_id")
_VALUE: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    Allocation: operator.attrgetter("network", "subnet", "ip", "container_id"),
    IdsEntry: operator.attrgetter("network", "container_id", "ips"),
}


def _place(entry: Allocation | IdsEntry) -> tuple[int, str, bytes]:
    """Where an entry sits in its network: subnet buckets (by name), then ``ids``."""
    if isinstance(entry, Allocation):
        return 0, entry.subnet, ip_to_key(entry.ip)
    return 1, "", entry.container_id.encode()


def printable(raw: bytes) -> str:
    """Text if the bytes are printable ASCII/UTF-8, else ``0x`` + hex."""
    if raw.isalnum():  # ASCII letters and digits: container IDs, most names
        return raw.decode("ascii")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return "0x" + raw.hex()
    return text if text.isprintable() else "0x" + raw.hex()


def ip_from_key(key: bytes) -> str | None:
    """The IP text of a 4- or 16-byte key (netavark's NormalizeIP), else None."""
    if len(key) == 4:
        return socket.inet_ntoa(key)
    if len(key) == 16:
        return socket.inet_ntop(socket.AF_INET6, key)
    return None


def ip_to_key(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


class PageCache:
    """What each leaf page of the last read gave, so that the next read of the same file
    parses only the pages that changed, and takes each subtree in which nothing changed
    as one result (a change of one container's allocation walks one path of the tree).

    A page counts as unchanged when the validator handed over the very same checked
    leaf (ipamguard.bolt reuses it only for the same bytes at the same place in the
    tree); its entries are then the same too. A branch page counts as unchanged with
    its whole subtree when the validator handed over the very same branch (it does
    only for a subtree none of whose pages changed). Pages that are gone are forgotten.
    """

    def __init__(self) -> None:
        self._pages: dict[PageKey, tuple[object, Any]] = {}
        self._next: dict[PageKey, tuple[object, Any]] = {}
        # per branch page: (the page, its subtree's leaf and branch entries, the result)
        self._branches: dict[PageKey, _Branch] = {}
        self._next_branches: dict[PageKey, _Branch] = {}
        self._trail: list[tuple[PageKey, tuple[object, Any]]] = []
        self._branch_trail: list[tuple[PageKey, _Branch]] = []
        self.parsed = 0  # pages parsed by the last read (for tests and benches)
        self.walked = 0  # branch pages walked into by the last read (the same)
        # the containers whose allocations or ids entries the last read found added,
        # removed or changed; None after the first read: nothing to compare with
        self.touched: frozenset[str] | None = None
        # the entry lists of the pages parsed again, as they were and as they are
        self._old: list[list[Any]] = []
        self._new: list[list[Any]] = []
        self.reads = 0
        # the entries (allocations, ids entries) of each container ID in the store as
        # last read: who holds what
        self.holders: dict[str, tuple[Any, ...]] = {}

    def entries(self, bucket: Bucket, parse: PageParser) -> Iterator[Any]:
        """``parse(keys, values, flags)`` of the leaves of ``bucket``, in key order, as
        one result (each list in it the concatenation of the leaves' lists)."""
        yield self._subtree(bucket, bucket.root, parse)

    def _subtree(self, bucket: Bucket, pgid: int, parse: PageParser) -> Any:
        # by page id alone: a page's results are taken only for the very same checked
        # page, which the validator hands over only at the same place (bucket, range)
        key: PageKey = pgid
        leaf = bucket.tx.snapshot.leaves.get(pgid)
        if leaf is not None:
            return self._leaf(bucket, leaf, pgid, parse)
        page = bucket.page_node(pgid)
        earlier = self._branches.get(key)
        if earlier is not None and earlier[0] is page:
            _, leaves, branches, result = earlier
            self._next.update(leaves)
            self._next_branches.update(branches)
            self._next_branches[key] = earlier
            self._trail += leaves
            self._branch_trail += branches
            self._branch_trail.append((key, earlier))
            return result
        self.walked += 1
        trail, branch_trail = len(self._trail), len(self._branch_trail)
        parts = [self._subtree(bucket, child, parse) for child in page.pgids]
        result = _combine(parts)
        # the entries below it, not its own (no reference cycle: a cache that the cycle
        # collector alone could free would keep old results alive)
        entry = (page, self._trail[trail:], self._branch_trail[branch_trail:], result)
        self._branch_trail.append((key, entry))
        self._next_branches[key] = entry
        return result

    def _leaf(self, bucket: Bucket, leaf: object, pgid: int, parse: PageParser) -> Any:
        cached = self._pages.get(pgid)
        if cached is None or cached[0] is not leaf:
            if cached is not None:
                self._old.append(cached[1][0])
            page = bucket.tx.snapshot.decode_leaf(pgid)  # parsed, then let go
            cached = (leaf, parse(page.keys, page.values, page.flags))
            self._new.append(cached[1][0])
            self.parsed += 1
        self._next[pgid] = cached
        self._trail.append((pgid, cached))
        return cached[1]

    def whole(self, path: tuple[bytes, ...], entries: Any) -> None:
        """An inline bucket's entries, parsed every time: what changed is noted too."""
        key = (*path, b"inline")
        cached = self._pages.get(key)
        if cached is None or cached[1] != entries:
            if cached is not None:
                self._old.append(cached[1][0])
            self._new.append(entries[0])
        self._next[key] = (None, entries)

    def done(self) -> None:
        """The read is complete: keep only the pages it saw."""
        for key in self._pages.keys() - self._next.keys():
            self._old.append(self._pages[key][1][0])  # a page gone: gone or moved entries
        if not self._pages and self.reads == 0:  # the first read: every entry is new
            self._index_all()
        else:
            self._index_changes()
        self.reads += 1
        self._pages, self._next, self._old, self._new = self._next, {}, [], []
        self._branches, self._next_branches = self._next_branches, {}
        self._trail, self._branch_trail = [], []

    def _index_changes(self) -> None:
        """The containers the read found changed, and who holds what updated for them."""
        old, new = _by_value(self._old), _by_value(self._new)
        # entries moved between pages cancel out
        removed = [old[k] for k in old.keys() - new.keys()]
        added = [new[k] for k in new.keys() - old.keys()]
        self.touched = frozenset(e.container_id for e in removed + added)
        holders = self.holders
        for entry in removed:
            kept = tuple(e for e in holders.get(entry.container_id, ()) if e != entry)
            if kept:
                holders[entry.container_id] = kept
            else:
                del holders[entry.container_id]
        for entry in added:
            holders[entry.container_id] = (*holders.get(entry.container_id, ()), entry)

    def _index_all(self) -> None:
        """Who holds what, from a first read: each container's entries made one tuple in
        one go. Added one at a time, each container had a tuple made and dropped, which
        left holes among the model's objects: at 65,000 allocations 2.5 MiB more resident
        in the store's order, ~1 MiB in a set's order (the code before)."""
        self.touched = None
        everything = sorted(
            (e for entries in self._new for e in entries), key=_CONTAINER_ID
        )  # stable: each container's entries in the store's order
        holders = self.holders
        for container, entries in itertools.groupby(everything, key=_CONTAINER_ID):
            holders[container] = (*holders.get(container, ()), *entries)


def _by_value(lists: list[list[Any]]) -> dict[tuple[Any, ...], Any]:
    """The entries of ``lists`` (each of one type) by their fields' values, the key
    their equality compares: tuples hashed in C, not the dataclasses' generated
    ``__hash__`` and ``__eq__`` (~8 % of a change's model work at 1,000 allocations)."""
    found: dict[tuple[Any, ...], Any] = {}
    for entries in lists:
        if entries:
            found.update(zip(map(_VALUE[type(entries[0])], entries), entries, strict=True))
    return found


PageParser = Callable[[Sequence[bytes], Sequence[bytes], Sequence[int]], Any]
PageKey = int | tuple[bytes, ...]  # a page id; an inline bucket: its path
_Branch = tuple[object, list[tuple[PageKey, tuple[object, Any]]], list[Any], Any]


def _combine(parts: list[Any]) -> Any:
    """The results of a page parser for consecutive leaves as one: lists concatenated,
    any other field the first that is not None (a key that only one leaf can hold)."""
    if len(parts) == 1:
        return parts[0]
    fields: list[Any] = []
    for values in zip(*parts, strict=True):
        if isinstance(values[0], list):
            joined: list[Any] = []
            for value in values:
                joined += value
            fields.append(joined)
        else:
            fields.append(next((v for v in values if v is not None), None))
    return tuple(fields)


def read_ipam(tx: Tx, cache: PageCache | None = None) -> IpamState:
    """Everything in ipam.db; ``cache``: reuse what an earlier read of the same file
    parsed for its unchanged leaf pages (a read-only ``tx`` only)."""
    state = IpamState(txid=tx.txid)
    if cache is not None:
        cache.parsed = cache.walked = 0
    for raw_name, _ in tx.items():
        network_bucket = tx.bucket(raw_name)
        assert network_bucket is not None  # the root holds only buckets
        state.networks.append(
            _read_network(printable(raw_name), network_bucket, state.malformed, cache)
        )
    if cache is not None:
        cache.done()
        state.index, state.index_read = cache, cache.reads
    return state


def read_network(tx: Tx, name: str) -> Network | None:
    """One network's allocations and ids entries (malformed entries are skipped)."""
    bucket = tx.bucket(name.encode())
    return None if bucket is None else _read_network(name, bucket, [])


def _pages(
    bucket: Bucket, path: tuple[bytes, ...], parse: PageParser, cache: PageCache | None
) -> Iterator[Any]:
    """parse() of each leaf page of ``bucket`` (through ``cache`` when it can serve)."""
    if cache is not None and bucket.root != 0 and not bucket.tx.writable:
        yield from cache.entries(bucket, parse)
        return
    items = list(bucket.items())
    keys = [k for k, _ in items]
    values = [b"" if v is None else v for _, v in items]
    flags = [1 if v is None else 0 for _, v in items]
    entries = parse(keys, values, flags)
    if cache is not None and not bucket.tx.writable:
        cache.whole(path, entries)
    yield entries


def _read_network(
    name: str, bucket: Bucket, malformed: list[Malformed], cache: PageCache | None = None
) -> Network:
    network = Network(name)
    for key, value in bucket.items():
        if value is not None:
            malformed.append(Malformed(name, None, printable(key), "value where a bucket belongs"))
            continue
        child = bucket.bucket(key)
        assert child is not None
        path = (name.encode(), key)
        if key == IDS_BUCKET:
            for entries, bad in _pages(child, path, functools.partial(_ids_page, name), cache):
                network.ids += entries
                malformed += bad
            continue
        cidr = printable(key)
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError:
            malformed.append(Malformed(name, None, cidr, "bucket name is not a subnet"))
            continue
        subnet = Subnet(cidr)
        parse = functools.partial(_subnet_page, name, cidr, net)
        for allocations, bad, last_ip in _pages(child, path, parse, cache):
            subnet.allocations += allocations
            malformed += bad
            if last_ip is not None:
                subnet.last_ip = last_ip or None
        network.subnets.append(subnet)
    return network


def _subnet_page(
    name: str,
    cidr: str,
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    keys: Sequence[bytes],
    values: Sequence[bytes],
    flags: Sequence[int],
) -> tuple[list[Allocation], list[Malformed], str | None]:
    """(allocations, malformed entries, lastIP: None if not on this page, "" if bad)."""
    allocations: list[Allocation] = []
    malformed: list[Malformed] = []
    last_ip = None
    first, last = int(net.network_address), int(net.broadcast_address)
    for key, value, flag in zip(keys, values, flags, strict=True):
        is_bucket = bool(flag & 1)
        if key == LAST_IP_KEY:
            last_ip = (ip_from_key(value) if not is_bucket else None) or ""
            if not last_ip:
                malformed.append(Malformed(name, cidr, "lastIP", "not a 4- or 16-byte IP"))
            continue
        ip = ip_from_key(key)
        if ip is None or is_bucket:
            what = "not a 4- or 16-byte IP" if ip is None else "a bucket where an ID belongs"
            malformed.append(Malformed(name, cidr, printable(key), what))
            continue
        if len(key) * 8 != net.max_prefixlen or not first <= int.from_bytes(key) <= last:
            malformed.append(Malformed(name, cidr, ip, f"IP outside subnet {cidr}"))
            continue
        # interned: an allocation and its ids entry share the ID's and the IP's text
        allocations.append(Allocation(name, cidr, intern(ip), intern(printable(value))))
    return allocations, malformed, last_ip


def _ids_page(
    name: str, keys: Sequence[bytes], values: Sequence[bytes], flags: Sequence[int]
) -> tuple[list[IdsEntry], list[Malformed]]:
    entries: list[IdsEntry] = []
    malformed: list[Malformed] = []
    for key, value, flag in zip(keys, values, flags, strict=True):
        container_id = intern(printable(key))
        ips = parse_ip_list(value) if not flag & 1 else None
        if ips is None:
            malformed.append(Malformed(name, None, container_id, "ids entry is not a JSON IP list"))
            continue
        entries.append(IdsEntry(name, container_id, tuple(map(intern, ips))))
    return entries, malformed


def parse_ip_list(value: bytes) -> tuple[str, ...] | None:
    if value.startswith(b'["') and value.endswith(b'"]') and b"\\" not in value:
        # the form netavark writes, e.g. ["10.88.0.2","fd00::2"]: skip the JSON parser
        text = value[2:-2].decode("ascii", "replace")
        if '"' not in text and ":" not in text:  # one IPv4 address: the common case
            try:
                if socket.inet_ntoa(socket.inet_aton(text)) == text and text.count(".") == 3:
                    return (text,)
            except OSError:
                pass
        ips = _canonical_ips(text.split('","'))
        if ips is not None:
            return ips
    try:
        items = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    return _canonical_ips(items) if isinstance(items, list) else None


def _canonical_ips(items: Sequence[object]) -> tuple[str, ...] | None:
    ips = []
    for item in items:
        ip = canonical_ip(item) if isinstance(item, str) else None
        if ip is None:
            return None
        ips.append(ip)
    return tuple(ips)


def canonical_ip(text: str) -> str | None:
    """The canonical text of an IP address (as Go prints it), or None if not one."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        return None
