"""A link's driver, as ``ethtool -i`` shows it (the SIOCETHTOOL ioctl, no tool needed)."""

from __future__ import annotations

import array
import fcntl
import socket
import struct

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x00000003
_DRVINFO_SIZE = 196  # struct ethtool_drvinfo
_IFREQ_SIZE = 40  # struct ifreq


def ethtool_driver(name: str) -> str | None:
    """The driver name ``ethtool -i NAME`` shows ("veth", "bridge"), None if unknown."""
    info = array.array("B", struct.pack("I", ETHTOOL_GDRVINFO) + bytes(_DRVINFO_SIZE - 4))
    address, _ = info.buffer_info()
    request = struct.pack("16sP", name.encode()[:15], address)
    request += bytes(_IFREQ_SIZE - len(request))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
    except OSError:
        return None
    driver = info[4:36].tobytes().split(b"\0", 1)[0].decode(errors="replace")
    return driver or None
