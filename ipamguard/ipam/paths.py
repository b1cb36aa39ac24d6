"""Where podman keeps ipam.db, its network configs and its network lock."""

from __future__ import annotations

ROOTFUL_DB = "/run/containers/networks/ipam.db"
ROOTFUL_NETWORK_DIR = "/etc/containers/networks"

# podman 5 (containers/common >= 0.57) and podman 4 take one of these; taking
# every one that exists, always in this order, is safe.
ROOTFUL_NETWORK_LOCKS = (
    "/run/lock/netavark.lock",
    f"{ROOTFUL_NETWORK_DIR}/netavark.lock",
)

PODMAN_SOCKET_URL = "unix:///run/podman/podman.sock"
BACKUP_DIR = "/var/lib/ipamguard/backups"
