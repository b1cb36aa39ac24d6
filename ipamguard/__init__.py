"""ipamguard: finds and heals leaked IP allocations in podman's netavark ipam.db."""

__version__ = "0.1.0"
