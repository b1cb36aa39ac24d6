"""The journal's MESSAGE_IDs: one fixed 128-bit ID per kind of event.

Log them as ``log.warning("...", message_id=messages.LEAK_FOUND, ...)``. journald
stores the ID with the entry; ``journalctl MESSAGE_ID=...`` finds every entry of a
kind, and ``journalctl -x`` shows the explanation from ``systemd/ipamguard.catalog``
(a test keeps both lists equal). An ID never changes once released: generate a new
one (``python3 -c 'import uuid; print(uuid.uuid4().hex)'``) for a new kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

DAEMON_STARTED: Final = "7343d52151cd40e5a098be6a21c0a8fb"
"""The daemon finished its first reconcile and is ready."""

DAEMON_STOPPING: Final = "c09f8e54ec554c9786e081b8dbb11efa"
"""The daemon got SIGTERM or SIGINT and is stopping."""

CONFIG_RELOADED: Final = "657ba90b6bfc4ebbb4d22613f4dba0d2"
"""SIGHUP: the new configuration file was loaded and is in use."""

CONFIG_REJECTED: Final = "5f6bbb6535b4414e83b4846faa5ff783"
"""SIGHUP: the new configuration file is bad; the old configuration stays in use."""

LEAK_FOUND: Final = "2a1ab089f47e4fffb0990e8d31a14487"
"""An allocation is held by a container that is gone (alert)."""

LEAK_RELEASED: Final = "1fd7bf226ecf426080036fc4f217a35f"
"""A confirmed leak was released from ipam.db (repair on)."""

REPAIR_REFUSED: Final = "150e4ac430034e99ac25e27544aaca39"
"""A repair was not done: unsafe, or the allocation changed under the locks."""

DB_UNREADABLE: Final = "c0d4c624534740c68977c2379373b591"
"""ipam.db could not be read or is not a valid bbolt file."""

PODMAN_UNREACHABLE: Final = "7fc3f818168e405b8daa529e0c221195"
"""podman's API or event stream cannot be reached; nothing is released meanwhile."""

PODMAN_RECONNECTED: Final = "515561ee28f1432a8656a86552c2e01c"
"""podman's API is reachable again; a full resync follows."""

LOCK_TIMEOUT: Final = "1057a733488543ef9492833dd8a1c4de"
"""podman's network lock or ipam.db's lock stayed held too long."""

FINDING_RESOLVED: Final = "262629cab5eb41f6bac5535ebafb657b"
"""A finding reported earlier is gone without a repair by ipamguard."""

NETWORKD_CONFLICT: Final = "6b10dba94498439ab9c8b6983dc95cb6"
"""systemd-networkd manages a link that belongs to the container network stack."""

VETH_DETACHED: Final = "eeaef50d82a443db8896210c0b86bf98"
"""A container's veth is no longer attached to its network's bridge."""

CONFIG_WARNING: Final = "270b8e66114743a285b33f8459a767dd"
"""A configuration value is allowed but unwise (e.g. a grace period below the floor)."""

SUBNET_LOW: Final = "a2ca9bd11c8849f282cdb6cb68432c5e"
"""A subnet's free addresses fell under [alerts] subnet_free_percent."""

SUBNET_RECOVERED: Final = "28312aa87a2640a98aa2365560679192"
"""A subnet reported as low on addresses is back over the threshold (or gone)."""

MESSAGE_IDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "DAEMON_STARTED": DAEMON_STARTED,
        "DAEMON_STOPPING": DAEMON_STOPPING,
        "CONFIG_RELOADED": CONFIG_RELOADED,
        "CONFIG_REJECTED": CONFIG_REJECTED,
        "LEAK_FOUND": LEAK_FOUND,
        "LEAK_RELEASED": LEAK_RELEASED,
        "REPAIR_REFUSED": REPAIR_REFUSED,
        "DB_UNREADABLE": DB_UNREADABLE,
        "PODMAN_UNREACHABLE": PODMAN_UNREACHABLE,
        "PODMAN_RECONNECTED": PODMAN_RECONNECTED,
        "LOCK_TIMEOUT": LOCK_TIMEOUT,
        "FINDING_RESOLVED": FINDING_RESOLVED,
        "NETWORKD_CONFLICT": NETWORKD_CONFLICT,
        "VETH_DETACHED": VETH_DETACHED,
        "CONFIG_WARNING": CONFIG_WARNING,
        "SUBNET_LOW": SUBNET_LOW,
        "SUBNET_RECOVERED": SUBNET_RECOVERED,
    }
)
"""Every MESSAGE_ID by its constant's name."""
