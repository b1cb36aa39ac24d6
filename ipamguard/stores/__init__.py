"""Allocation stores: where podman keeps its IP allocations.

``base`` is the boundary every store implements (read a snapshot with a fence,
write under the store's own file lock); ``netavark`` is ipam.db (bbolt). A third
store goes beside them and nothing above this package changes: the reconciler
judges an ``IpamState`` whatever store it came from, and ``ipamguard.fenced``
writes through ``AllocationStore.write``.
"""
