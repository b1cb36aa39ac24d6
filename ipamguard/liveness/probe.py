"""A sign of life from the network itself: probe addresses on an interface (a bridge).

IPv4: an RFC 5227 ARP probe (ARP request, sender IP 0.0.0.0, target the address,
broadcast). IPv6: a neighbour solicitation as duplicate address detection sends it
(source ``::``, to the target's solicited-node multicast group). Both are built here
and sent on a raw ``AF_PACKET`` socket bound to the interface (needs CAP_NET_RAW in the
user namespace that owns the network namespace), one socket per address family, so all
addresses are probed at once and the whole call takes about ``timeout`` however many
there are (less when every address answers).

An address is **in use** when a host answers for it (an ARP reply or request with it as
sender IP, a neighbour advertisement for it) or claims it (an ARP probe or a DAD
solicitation for it from another MAC). **Silent** is no answer, which proves nothing
on its own (a firewall, a host that ignores probes). **Impossible** says why nothing
could be sent (no such interface, no permission, AF_PACKET not allowed); never an
exception, the caller gets a verdict per address.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import select
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

ProbeStatus = Literal["in-use", "silent", "impossible"]
IN_USE: ProbeStatus = "in-use"
SILENT: ProbeStatus = "silent"
IMPOSSIBLE: ProbeStatus = "impossible"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ETH_P_ARP = 0x0806
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ARPHRD_ETHER = 1
ARP_REQUEST, ARP_REPLY = 1, 2
IPPROTO_ICMPV6 = 58
ND_SOLICIT, ND_ADVERT = 135, 136
ND_OPT_TARGET_LINKADDR = 2
SIOCGIFFLAGS = 0x8913
SIOCGIFHWADDR = 0x8927
IFF_UP = 0x1
IFNAMSIZ = 16
PACKET_OUTGOING = 4
BROADCAST = b"\xff" * 6
UNSPECIFIED = ipaddress.IPv6Address("::")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the network said about one address."""

    address: str
    status: ProbeStatus
    reason: str  # one line: who answered and how fast, how long it stayed silent, or why not
    mac: str | None = None  # the responder's MAC (in use only)
    elapsed: float | None = None  # seconds from the first probe to the answer

    @property
    def answered(self) -> bool:
        """True if some host answered for (or claimed) the address."""
        return self.status == IN_USE


class _Unprobeable(Exception):
    """Why nothing can be sent on the interface (becomes an "impossible" result)."""


@dataclass(slots=True)
class _Target:
    address: IPAddress
    frame: bytes
    sent: int = 0
    first_sent: float = 0.0
    send_error: str = ""
    answer: ProbeResult | None = None


def probe_addresses(
    interface: str, addresses: Sequence[str], *, timeout: float = 0.5, attempts: int = 3
) -> dict[str, ProbeResult]:
    """Probe every address on ``interface`` at once, each ``attempts`` times over ``timeout``.

    Returns one result per address as given (never raises for an unprobeable interface or
    a malformed address); returns early once every address has answered.
    """
    if timeout <= 0 or attempts < 1:
        raise ValueError("timeout must be > 0 and attempts >= 1")
    results: dict[str, ProbeResult] = {}
    wanted: dict[IPAddress, list[str]] = {}
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            results[text] = ProbeResult(text, IMPOSSIBLE, f"{text!r} is not an IP address")
            continue
        if address.is_multicast or address.is_unspecified:
            results[text] = ProbeResult(text, IMPOSSIBLE, f"{text} is not a unicast address")
            continue
        wanted.setdefault(address, []).append(text)
    if not wanted:
        return results
    try:
        answers = _probe(interface, list(wanted), timeout, attempts)
    except _Unprobeable as why:
        answers = {a: ProbeResult(str(a), IMPOSSIBLE, str(why)) for a in wanted}
    for address, texts in wanted.items():
        for text in texts:
            results[text] = _as_given(answers[address], text)
    return results


def _as_given(result: ProbeResult, text: str) -> ProbeResult:
    if result.address == text:
        return result
    return ProbeResult(text, result.status, result.reason, result.mac, result.elapsed)


# --------------------------------------------------------------------------- the probe


def _probe(
    interface: str, addresses: list[IPAddress], timeout: float, attempts: int
) -> dict[IPAddress, ProbeResult]:
    families = {ETH_P_ARP if a.version == 4 else ETH_P_IPV6 for a in addresses}
    sockets = _open_sockets(interface, sorted(families))
    try:
        mac = _hardware_address(interface, next(iter(sockets.values())))
        targets = {a: _Target(a, _probe_frame(mac, a)) for a in addresses}
        _exchange(interface, sockets, mac, targets, timeout, attempts)
    finally:
        for sock in sockets.values():
            sock.close()
    return {a: _verdict(interface, t, timeout) for a, t in targets.items()}


def _exchange(
    interface: str,
    sockets: dict[int, socket.socket],
    mac: bytes,
    targets: dict[IPAddress, _Target],
    timeout: float,
    attempts: int,
) -> None:
    """Send the rounds of probes and read answers until the deadline or all answered."""
    poller = select.poll()
    by_fd = {sock.fileno(): proto for proto, sock in sockets.items()}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    start = time.monotonic()
    deadline = start + timeout
    rounds = 0
    for target in targets.values():
        target.first_sent = start  # until its first probe is sent
    while any(t.answer is None for t in targets.values()):
        now = time.monotonic()
        if rounds < attempts and now >= start + rounds * timeout / attempts:
            _send_round(sockets, targets)
            rounds += 1
            now = time.monotonic()
        if now >= deadline:
            break
        until = deadline if rounds >= attempts else start + rounds * timeout / attempts
        for fd, _ in poller.poll(max(0.0, until - now) * 1000):
            try:
                _read_answers(sockets[by_fd[fd]], by_fd[fd], mac, targets)
            except OSError as error:
                poller.unregister(fd)
                why = f"probing on {interface} failed: {error.strerror}"
                if error.errno == errno.ENETDOWN:
                    why += " (the interface went down or was removed meanwhile)"
                _fail(targets, by_fd[fd], why)


def _fail(targets: dict[IPAddress, _Target], proto: int, reason: str) -> None:
    """Every unanswered target of one family becomes impossible."""
    version = 4 if proto == ETH_P_ARP else 6
    for target in targets.values():
        if target.answer is None and target.address.version == version:
            target.answer = ProbeResult(str(target.address), IMPOSSIBLE, reason)


def _send_round(sockets: dict[int, socket.socket], targets: dict[IPAddress, _Target]) -> None:
    for target in targets.values():
        if target.answer is not None:
            continue
        sock = sockets[ETH_P_ARP if target.address.version == 4 else ETH_P_IPV6]
        try:
            sock.send(target.frame)
        except OSError as error:  # ENOBUFS, EAGAIN, ENETDOWN: this round not sent
            target.send_error = error.strerror or str(error)
            continue
        if target.sent == 0:
            target.first_sent = time.monotonic()
        target.sent += 1


def _read_answers(
    sock: socket.socket, proto: int, mac: bytes, targets: dict[IPAddress, _Target]
) -> None:
    """Drain the socket; record the first claim on each pending target."""
    while True:
        try:
            frame, where = sock.recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            return
        received = time.monotonic()
        if where[2] == PACKET_OUTGOING or frame[6:12] == mac:
            continue
        claim = _arp_claim(frame) if proto == ETH_P_ARP else _nd_claim(frame)
        if claim is None:
            continue
        address, responder, what = claim
        target = targets.get(address)
        if target is None or target.answer is not None or responder == mac:
            continue
        elapsed = received - target.first_sent
        text = _mac_text(responder)
        target.answer = ProbeResult(
            str(address), IN_USE, what.format(mac=text, ms=_ms(elapsed)), text, elapsed
        )


def _verdict(interface: str, target: _Target, timeout: float) -> ProbeResult:
    if target.answer is not None:
        return target.answer
    what = "ARP probe" if target.address.version == 4 else "neighbour solicitation"
    if target.sent == 0:
        reason = f"no {what} could be sent on {interface}: {target.send_error}"
        return ProbeResult(str(target.address), IMPOSSIBLE, reason)
    plural = "s" if target.sent > 1 else ""
    reason = f"no answer to {target.sent} {what}{plural} on {interface} within {timeout:g} s"
    return ProbeResult(str(target.address), SILENT, reason)


# --------------------------------------------------------------------------- the interface


def _open_sockets(interface: str, protocols: list[int]) -> dict[int, socket.socket]:
    """One non-blocking raw packet socket per protocol, bound to the interface."""
    encoded = interface.encode()
    if not encoded or len(encoded) >= IFNAMSIZ or b"/" in encoded or b"\0" in encoded:
        raise _Unprobeable(f"{interface!r} is not a valid interface name")
    sockets: dict[int, socket.socket] = {}
    try:
        for proto in protocols:
            # protocol 0 receives nothing until bound: no frames of other interfaces
            sock = _packet_socket()
            sockets[proto] = sock
            try:
                sock.bind((interface, proto))
            except OSError as error:
                if error.errno == errno.ENODEV:
                    raise _Unprobeable(f"interface {interface} does not exist") from None
                raise _Unprobeable(f"cannot bind to {interface}: {error.strerror}") from None
            sock.setblocking(False)
        _check_up(interface, sockets[protocols[0]])
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


def _packet_socket() -> socket.socket:
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError as error:
        if error.errno in (errno.EPERM, errno.EACCES):
            raise _Unprobeable(
                "no permission for a raw packet socket (needs CAP_NET_RAW in the user "
                "namespace that owns this network namespace)"
            ) from None
        if error.errno == errno.EAFNOSUPPORT:
            raise _Unprobeable(
                "AF_PACKET sockets are not allowed here (a RestrictAddressFamilies= "
                "sandbox without AF_PACKET?)"
            ) from None
        raise _Unprobeable(f"cannot open a raw packet socket: {error.strerror}") from None


def _ifreq(interface: str, sock: socket.socket, request: int) -> bytes:
    buffer = struct.pack("16s16x", interface.encode())
    try:
        return fcntl.ioctl(sock.fileno(), request, buffer)
    except OSError as error:
        raise _Unprobeable(f"cannot query {interface}: {error.strerror}") from None


def _check_up(interface: str, sock: socket.socket) -> None:
    (flags,) = struct.unpack_from("H", _ifreq(interface, sock, SIOCGIFFLAGS), IFNAMSIZ)
    if not flags & IFF_UP:
        raise _Unprobeable(f"interface {interface} is down")


def _hardware_address(interface: str, sock: socket.socket) -> bytes:
    """The interface's MAC (SIOCGIFHWADDR); it must be an Ethernet interface."""
    answer = _ifreq(interface, sock, SIOCGIFHWADDR)
    (family,) = struct.unpack_from("H", answer, IFNAMSIZ)
    if family != ARPHRD_ETHER:
        raise _Unprobeable(f"{interface} is not an Ethernet interface (hardware type {family})")
    return answer[IFNAMSIZ + 2 : IFNAMSIZ + 8]


# --------------------------------------------------------------------------- frames


def _probe_frame(mac: bytes, address: IPAddress) -> bytes:
    if isinstance(address, ipaddress.IPv4Address):
        return arp_probe(mac, address)
    return neighbour_solicitation(mac, address)


def arp_probe(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """An RFC 5227 ARP probe for address from mac: broadcast, sender IP 0.0.0.0."""
    ethernet = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack(
        "!HHBBH6s4s6s4s", ARPHRD_ETHER, ETH_P_IPV4, 6, 4, ARP_REQUEST,
        mac, bytes(4), bytes(6), address.packed,
    )  # fmt: skip
    return ethernet + arp


def solicited_node(address: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """ff02::1:ffXX:XXXX, the group of every address ending in the same 24 bits."""
    return ipaddress.IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + address.packed[13:])


def neighbour_solicitation(mac: bytes, target: ipaddress.IPv6Address) -> bytes:
    """A DAD neighbour solicitation for target: from ::, to its solicited-node group."""
    group = solicited_node(target)
    icmp = struct.pack("!BBH4x16s", ND_SOLICIT, 0, 0, target.packed)
    icmp = icmp[:2] + struct.pack("!H", icmpv6_checksum(UNSPECIFIED, group, icmp)) + icmp[4:]
    ipv6 = struct.pack(
        "!IHBB16s16s", 6 << 28, len(icmp), IPPROTO_ICMPV6, 255, UNSPECIFIED.packed, group.packed
    )
    ethernet = b"\x33\x33" + group.packed[12:] + mac + struct.pack("!H", ETH_P_IPV6)
    return ethernet + ipv6 + icmp


def icmpv6_checksum(
    source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, message: bytes
) -> int:
    """The Internet checksum over the IPv6 pseudo-header and the ICMPv6 message."""
    pseudo = source.packed + destination.packed + struct.pack("!I3xB", len(message), 58)
    data = pseudo + message + (b"\0" if len(message) % 2 else b"")
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


Claim = tuple[IPAddress, bytes, str]  # address, responder MAC, reason with {mac} and {ms}


def _arp_claim(frame: bytes) -> Claim | None:
    """An ARP frame that says some host holds (or is claiming) an address."""
    if len(frame) < 42:
        return None
    htype, ptype, hlen, plen, op, sha, spa, _, tpa = struct.unpack_from("!HHBBH6s4s6s4s", frame, 14)
    if (htype, ptype, hlen, plen) != (ARPHRD_ETHER, ETH_P_IPV4, 6, 4):
        return None
    if spa != bytes(4):
        what = "ARP reply" if op == ARP_REPLY else "ARP request using it"
        return ipaddress.IPv4Address(spa), sha, what + " from {mac} in {ms} ms"
    if op == ARP_REQUEST:
        return ipaddress.IPv4Address(tpa), sha, "ARP probe for it from {mac} (claiming it)"
    return None


def _nd_claim(frame: bytes) -> Claim | None:
    """An IPv6 frame that says some host holds (or is claiming) an address."""
    if len(frame) < 14 + 40 or frame[14] >> 4 != 6:
        return None
    source = ipaddress.IPv6Address(frame[22:38])
    ether_source = frame[6:12]
    is_nd = (
        frame[20] == IPPROTO_ICMPV6 and len(frame) >= 78 and frame[54] in (ND_SOLICIT, ND_ADVERT)
    )
    if not is_nd:
        if source.is_unspecified:
            return None
        return source, ether_source, "IPv6 packet from it ({mac}) in {ms} ms"
    target = ipaddress.IPv6Address(frame[62:78])
    if frame[54] == ND_ADVERT:
        mac = _target_link_address(frame[78:]) or ether_source
        return target, mac, "neighbour advertisement from {mac} in {ms} ms"
    if source.is_unspecified:
        return target, ether_source, "duplicate address detection for it from {mac} (claiming it)"
    return source, ether_source, "neighbour solicitation from it ({mac}) in {ms} ms"


def _target_link_address(options: bytes) -> bytes | None:
    """The target link-layer address option of a neighbour advertisement, if any."""
    while len(options) >= 8 and options[1]:
        length = options[1] * 8
        if options[0] == ND_OPT_TARGET_LINKADDR and length >= 8:
            return options[2:8]
        options = options[length:]
    return None


def _mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"
