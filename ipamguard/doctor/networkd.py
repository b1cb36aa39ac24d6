"""systemd-networkd over D-Bus (system bus, ``org.freedesktop.network1``).

What is asked, all with NO_AUTO_START (a check must never start networkd):
- ``org.freedesktop.DBus.NameHasOwner``: is networkd running at all?
- ``Manager.ListLinks`` -> (ifindex, name, object path) of every link it knows;
- ``Link.Describe`` (JSON, networkd >= 248) -> AdministrativeState and the
  ``NetworkFile`` that caught the link; on older networkd the
  ``AdministrativeState`` property alone;
- ``Manager.Reload`` for the fix (root, or polkit's blessing).

``DBusNetworkd`` is the only class here that does I/O; the data classes and the
``NetworkdClient`` protocol are what the rest of ``doctor`` sees.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ipamguard.errors import DBusUnavailable, NetworkdError, NetworkdNotRunning

BUS_NAME = "org.freedesktop.network1"
MANAGER_PATH = "/org/freedesktop/network1"
MANAGER_INTERFACE = "org.freedesktop.network1.Manager"
LINK_INTERFACE = "org.freedesktop.network1.Link"

# AdministrativeState values in which networkd leaves a link alone.
NOT_MANAGED_STATES = frozenset({"unmanaged", "linger"})

DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class NetworkdLink:
    """networkd's view of one link."""

    index: int
    name: str
    administrative_state: str  # "configuring", "configured", "unmanaged", "pending", ...
    network_file: str | None  # the .network file networkd applied, when it says

    @property
    def managed(self) -> bool:
        return self.administrative_state not in NOT_MANAGED_STATES


@dataclass(frozen=True)
class NetworkdStatus:
    """Is networkd running, and if so, what it does with each link.

    ``running`` is None when it could not be told (no D-Bus); ``detail`` says why.
    """

    running: bool | None
    detail: str = ""
    links: tuple[NetworkdLink, ...] = field(default=())

    def link(self, name: str) -> NetworkdLink | None:
        return next((link for link in self.links if link.name == name), None)


class NetworkdClient(Protocol):
    """The two things doctor needs from networkd."""

    def status(self) -> NetworkdStatus: ...

    def reload(self) -> None: ...


class DBusNetworkd:
    """``NetworkdClient`` over the D-Bus system bus (dbus-next, asyncio).

    The synchronous methods run their own event loop; from inside a running
    loop (the daemon) await ``fetch_status()``/``request_reload()`` instead.
    """

    def __init__(self, bus_address: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.bus_address = bus_address
        self.timeout = timeout

    def status(self) -> NetworkdStatus:
        try:
            return asyncio.run(self.fetch_status())
        except DBusUnavailable as error:
            return NetworkdStatus(running=None, detail=str(error))
        except NetworkdNotRunning as error:
            return NetworkdStatus(running=False, detail=str(error))
        except NetworkdError as error:  # e.g. ListLinks denied or timed out
            return NetworkdStatus(running=None, detail=str(error))

    def reload(self) -> None:
        asyncio.run(self.request_reload())

    async def fetch_status(self) -> NetworkdStatus:
        """Raises DBusUnavailable, NetworkdNotRunning or NetworkdError."""
        async with _Connection(self.bus_address, self.timeout) as bus:
            await bus.require_networkd()
            reply = await bus.call(MANAGER_PATH, MANAGER_INTERFACE, "ListLinks")
            links = []
            for index, name, path in reply[0]:
                link = await _describe(bus, int(index), str(name), str(path))
                if link is not None:
                    links.append(link)
        links.sort(key=lambda link: link.index)
        return NetworkdStatus(running=True, detail="running", links=tuple(links))

    async def request_reload(self) -> None:
        """Manager.Reload: networkd re-reads its files and reconfigures links."""
        async with _Connection(self.bus_address, self.timeout) as bus:
            await bus.require_networkd()
            await bus.call(MANAGER_PATH, MANAGER_INTERFACE, "Reload")


async def _describe(bus: _Connection, index: int, name: str, path: str) -> NetworkdLink | None:
    """networkd's view of one link; None if the link vanished meanwhile."""
    try:
        (text,) = await bus.call(path, LINK_INTERFACE, "Describe")
        description = json.loads(text)
        return NetworkdLink(
            index=index,
            name=name,
            administrative_state=str(description.get("AdministrativeState", "unknown")),
            network_file=description.get("NetworkFile") or None,
        )
    except (NetworkdError, ValueError):
        pass  # networkd < 248 has no Describe: fall back to the property
    try:
        (variant,) = await bus.call(
            path,
            "org.freedesktop.DBus.Properties",
            "Get",
            signature="ss",
            body=[LINK_INTERFACE, "AdministrativeState"],
        )
    except NetworkdError:
        return None  # the link is gone (UnknownObject)
    return NetworkdLink(index, name, str(variant.value), None)


class _Connection:
    """One system-bus connection, translating every failure into our errors."""

    def __init__(self, bus_address: str | None, timeout: float) -> None:
        self.bus_address = bus_address
        self.timeout = timeout
        self.bus: Any = None

    async def __aenter__(self) -> _Connection:
        from dbus_next.aio.message_bus import MessageBus
        from dbus_next.constants import BusType

        try:
            if self.bus_address is None:
                bus = MessageBus(bus_type=BusType.SYSTEM)
            else:
                bus = MessageBus(bus_address=self.bus_address)
            self.bus = await asyncio.wait_for(bus.connect(), self.timeout)
        except (TimeoutError, OSError) as error:
            reason = getattr(error, "strerror", None) or "timed out"
            raise DBusUnavailable(f"cannot reach the D-Bus system bus: {reason}") from error
        except Exception as error:  # dbus-next raises AuthError, ValueError, ...
            raise DBusUnavailable(f"cannot reach the D-Bus system bus: {error}") from error
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.bus is not None:
            self.bus.disconnect()

    async def require_networkd(self) -> None:
        (has_owner,) = await self.call(
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            destination="org.freedesktop.DBus",
            signature="s",
            body=[BUS_NAME],
        )
        if not has_owner:
            raise NetworkdNotRunning(f"systemd-networkd is not running ({BUS_NAME} has no owner)")

    async def call(
        self,
        path: str,
        interface: str,
        member: str,
        *,
        destination: str = BUS_NAME,
        signature: str = "",
        body: Sequence[Any] = (),
    ) -> list[Any]:
        from dbus_next.constants import MessageFlag, MessageType
        from dbus_next.message import Message

        message = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=list(body),
            flags=MessageFlag.NO_AUTOSTART,
        )
        try:
            reply = await asyncio.wait_for(self.bus.call(message), self.timeout)
        except TimeoutError as error:
            raise NetworkdError(f"{interface}.{member}: no answer in {self.timeout:g}s") from error
        except Exception as error:  # the connection broke
            raise DBusUnavailable(f"D-Bus connection lost: {error}") from error
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else ""
            raise NetworkdError(f"{interface}.{member}: {reply.error_name}: {text}".rstrip(": "))
        return list(reply.body)
