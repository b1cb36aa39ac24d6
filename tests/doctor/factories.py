"""Small builders for doctor's data, so tests read as the situation they describe."""

from __future__ import annotations

from collections.abc import Iterable

from ipamguard.doctor.links import Link
from ipamguard.doctor.networkd import NetworkdLink, NetworkdStatus


def bridge(name: str, index: int, *, up: bool = True) -> Link:
    return Link(
        name=name,
        index=index,
        peer_index=index,
        kind="bridge",
        driver="bridge",
        master=None,
        admin_up=up,
        operstate="up" if up else "down",
        mac=f"02:00:00:00:00:{index:02x}",
        link_type="bridge",
    )


def veth(
    name: str, index: int, *, master: str | None = None, peer: int = 1000, up: bool = True
) -> Link:
    """A host-side veth; its peer (ifindex ``peer``) is in another namespace by default."""
    return Link(
        name=name,
        index=index,
        peer_index=peer,
        kind="veth",
        driver="veth",
        master=master,
        admin_up=up,
        operstate="up" if up else "down",
        mac=f"02:00:00:00:01:{index:02x}",
        link_type="ether",
    )


def ether(name: str, index: int, *, master: str | None = None) -> Link:
    """A physical NIC (driver e1000e)."""
    return Link(
        name=name,
        index=index,
        peer_index=index,
        kind="other",
        driver="e1000e",
        master=master,
        admin_up=True,
        operstate="up",
        mac=f"52:54:00:00:00:{index:02x}",
        link_type="ether",
    )


def networkd(
    states: dict[str, str], files: dict[str, str] | None = None, links: Iterable[Link] = ()
) -> NetworkdStatus:
    """A running networkd with these AdministrativeStates (and NetworkFiles)."""
    index = {link.name: link.index for link in links}
    files = files or {}
    seen = tuple(
        NetworkdLink(index.get(name, n + 1), name, state, files.get(name))
        for n, (name, state) in enumerate(states.items())
    )
    return NetworkdStatus(running=True, detail="running", links=seen)
