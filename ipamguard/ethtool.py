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


def ethtool_driver(name: str, sock: socket.socket | None = None) -> str | None:
    """The driver name ``ethtool -i NAME`` shows ("veth", "bridge"), None if unknown;
    ``sock``: a datagram socket to ask through (one for many links), else a new one."""
    info = array.array("B", struct.pack("I", ETHTOOL_GDRVINFO) + bytes(_DRVINFO_SIZE - 4))
    address, _ = info.buffer_info()
    request = struct.pack("16sP", name.encode()[:15], address)
    request += bytes(_IFREQ_SIZE - len(request))
    try:
        if sock is not None:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
        else:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as own:
                fcntl.ioctl(own.fileno(), SIOCETHTOOL, request)
    except OSError:
        return None
    driver = info[4:36].tobytes().split(b"\0", 1)[0].decode(errors="replace")
    return driver or None


class DriverReader:
    """``ethtool_driver`` of many links through one socket (close it when done)."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None

    def __call__(self, name: str) -> str | None:
        if self.sock is None:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            except OSError:
                return None
        return ethtool_driver(name, self.sock)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
