"""Network links as the kernel shows them in ``/sys/class/net``.

A ``Link`` is plain data; ``SysfsLinks`` reads it. Only the reader does I/O:
the analysis takes a sequence of links and never looks at the system itself.

Notes on sysfs: ``/sys/class/net`` shows the links of the network namespace
that *mounted* that sysfs, not necessarily the caller's. ``iflink`` of a veth is
its peer's ifindex, which lives in another namespace for a container veth.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ipamguard.errors import LinkReadError
from ipamguard.ethtool import DriverReader

SYS_CLASS_NET = Path("/sys/class/net")

IFF_UP = 0x1

# ARPHRD_* numbers networkd reports as a link type when udev gives no DEVTYPE.
_ARPHRD_TYPES = {1: "ether", 772: "loopback", 65534: "none"}


@dataclass(frozen=True)
class Link:
    """One network link of the current namespace."""

    name: str
    index: int
    peer_index: int  # sysfs ``iflink``: the veth peer's ifindex, else the own index
    kind: str  # "bridge", "veth", a udev DEVTYPE ("vlan", "bond", ...) or "other"
    driver: str | None  # ethtool driver name ("veth", "bridge", ...), None if unknown
    master: str | None  # the bridge (or bond) this link is enslaved to
    admin_up: bool  # IFF_UP: someone set the link up
    operstate: str  # "up", "down", "lowerlayerdown", "unknown", ...
    mac: str  # "aa:bb:cc:dd:ee:ff" (lower case), "" if none
    link_type: str | None  # what networkd's [Match] Type= sees: "bridge", "ether", ...

    @property
    def is_veth(self) -> bool:
        return self.kind == "veth"

    @property
    def is_bridge(self) -> bool:
        return self.kind == "bridge"


class LinkSource(Protocol):
    """Where the current links come from (sysfs in production, a list in tests)."""

    def links(self) -> Sequence[Link]: ...


def peer_is_local(link: Link, links: Sequence[Link]) -> bool:
    """True if ``link``'s veth peer is in this namespace too (not a container's end)."""
    if link.peer_index == link.index:
        return True
    return any(other.index == link.peer_index and other.peer_index == link.index for other in links)


# --- the sysfs reader ---------------------------------------------------------


class SysfsLinks:
    """Reads every link under ``/sys/class/net`` (or a copy of that tree in tests)."""

    def __init__(
        self,
        root: Path = SYS_CLASS_NET,
        driver_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self.root = root
        self.driver_of = driver_of  # None: ethtool's, one socket for all the links

    def links(self) -> list[Link]:
        try:
            names = sorted(os.listdir(self.root))
        except OSError as error:
            raise LinkReadError(f"cannot list {self.root}: {error.strerror}") from error
        links = []
        root = os.fspath(self.root)
        reader = DriverReader() if self.driver_of is None else None
        driver_of = self.driver_of if reader is None else reader
        assert driver_of is not None
        try:
            for name in names:
                link = self._read(f"{root}/{name}", name, driver_of)
                if link is not None:
                    links.append(link)
        finally:
            if reader is not None:
                reader.close()
        return links

    def _read(self, path: str, name: str, driver_of: Callable[[str], str | None]) -> Link | None:
        # plain os calls on string paths: a host with a thousand containers has a
        # thousand veths, read after every reconcile (pathlib tripled the cost)
        try:
            index = int(_read_text(f"{path}/ifindex"))
        except (OSError, ValueError):
            return None  # vanished while we looked, or not a link directory
        uevent = _read_uevent(f"{path}/uevent")
        driver = driver_of(name)
        kind = _kind(path, uevent, driver)
        return Link(
            name=name,
            index=index,
            peer_index=_read_int(f"{path}/iflink", index),
            kind=kind,
            driver=driver,
            master=_read_master(path),
            admin_up=bool(_read_int(f"{path}/flags", 0) & IFF_UP),
            operstate=_read_text_or(f"{path}/operstate", "unknown"),
            mac=_read_text_or(f"{path}/address", "").lower(),
            link_type=uevent.get("DEVTYPE") or _ARPHRD_TYPES.get(_read_int(f"{path}/type", -1)),
        )


def _kind(path: str, uevent: dict[str, str], driver: str | None) -> str:
    if os.path.isdir(f"{path}/bridge") or uevent.get("DEVTYPE") == "bridge":
        return "bridge"
    if driver == "veth":
        return "veth"
    return uevent.get("DEVTYPE") or "other"


def _read_master(path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(f"{path}/master"))
    except OSError:
        return None


def _read_uevent(path: str) -> dict[str, str]:
    fields = {}
    for line in _read_text_or(path, "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


def _read_text(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode(errors="replace").strip()
    finally:
        os.close(fd)


def _read_text_or(path: str, default: str) -> str:
    try:
        return _read_text(path)
    except OSError:
        return default


def _read_int(path: str, default: int) -> int:
    try:
        return int(_read_text(path), 0)
    except (OSError, ValueError):
        return default
