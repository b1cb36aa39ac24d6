"""netavark's ipam.db: the typed model, paths, and releasing allocations."""

from ipamguard.ipam.model import (
    Allocation,
    IdsEntry,
    IpamState,
    Malformed,
    Network,
    Subnet,
    read_ipam,
)

__all__ = ["Allocation", "IdsEntry", "IpamState", "Malformed", "Network", "Subnet", "read_ipam"]
