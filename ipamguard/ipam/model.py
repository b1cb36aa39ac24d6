"""A typed model of netavark's ipam.db, read through the bolt API only.

Layout (containers/common libnetwork/netavark/ipam.go):
  NETWORK (bucket)
    SUBNET CIDR (bucket): IP as 4/16 bytes -> container ID; "lastIP" -> IP bytes
    "ids" (bucket): container ID -> JSON array of IP strings
Anything netavark could not have written is kept as a ``Malformed`` entry rather
than dropped, so that nothing in the file goes unseen.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class IpamState:
    """Everything in ipam.db as of one committed transaction."""

    txid: int
    networks: list[Network] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)

    def allocations(self) -> list[Allocation]:
        return [a for n in self.networks for s in n.subnets for a in s.allocations]

    def ids_entries(self) -> list[IdsEntry]:
        return [e for n in self.networks for e in n.ids]

    def network(self, name: str) -> Network | None:
        return next((n for n in self.networks if n.name == name), None)

    def holders(self) -> frozenset[str]:
        """Every container ID that holds an address or an ids entry."""
        held = {a.container_id for a in self.allocations()}
        held.update(e.container_id for e in self.ids_entries())
        return frozenset(held)


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


def read_ipam(tx: Tx) -> IpamState:
    state = IpamState(txid=tx.txid)
    for raw_name, _ in tx.items():
        network_bucket = tx.bucket(raw_name)
        assert network_bucket is not None  # the root holds only buckets
        state.networks.append(_read_network(printable(raw_name), network_bucket, state.malformed))
    return state


def read_network(tx: Tx, name: str) -> Network | None:
    """One network's allocations and ids entries (malformed entries are skipped)."""
    bucket = tx.bucket(name.encode())
    return None if bucket is None else _read_network(name, bucket, [])


def _read_network(name: str, bucket: Bucket, malformed: list[Malformed]) -> Network:
    network = Network(name)
    for key, value in bucket.items():
        if value is not None:
            malformed.append(Malformed(name, None, printable(key), "value where a bucket belongs"))
            continue
        child = bucket.bucket(key)
        assert child is not None
        if key == IDS_BUCKET:
            network.ids = _read_ids(name, child, malformed)
            continue
        cidr = printable(key)
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError:
            malformed.append(Malformed(name, None, cidr, "bucket name is not a subnet"))
            continue
        network.subnets.append(_read_subnet(name, key, net, child, malformed))
    return network


def _read_subnet(
    name: str,
    raw_name: bytes,
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    bucket: Bucket,
    malformed: list[Malformed],
) -> Subnet:
    cidr = printable(raw_name)
    subnet = Subnet(cidr)
    allocations = subnet.allocations
    first, last = int(net.network_address), int(net.broadcast_address)
    for key, value in bucket.items():
        if key == LAST_IP_KEY:
            subnet.last_ip = ip_from_key(value) if value is not None else None
            if subnet.last_ip is None:
                malformed.append(Malformed(name, cidr, "lastIP", "not a 4- or 16-byte IP"))
            continue
        ip = ip_from_key(key)
        if ip is None or value is None:
            what = "not a 4- or 16-byte IP" if ip is None else "a bucket where an ID belongs"
            malformed.append(Malformed(name, cidr, printable(key), what))
            continue
        if len(key) * 8 != net.max_prefixlen or not first <= int.from_bytes(key) <= last:
            malformed.append(Malformed(name, cidr, ip, f"IP outside subnet {cidr}"))
            continue
        allocations.append(Allocation(name, cidr, ip, printable(value)))
    return subnet


def _read_ids(name: str, bucket: Bucket, malformed: list[Malformed]) -> list[IdsEntry]:
    entries = []
    for key, value in bucket.items():
        container_id = printable(key)
        ips = parse_ip_list(value) if value is not None else None
        if ips is None:
            malformed.append(Malformed(name, None, container_id, "ids entry is not a JSON IP list"))
            continue
        entries.append(IdsEntry(name, container_id, ips))
    return entries


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
