"""Allocation stores: where podman keeps its IP allocations.

``base`` is the boundary every store implements (read a snapshot with a fence,
write under the store's own file lock); ``netavark`` is ipam.db (bbolt); ``cni``
is the CNI backend's host-local files (one file per address, ``cni_files``, with
networks and ranges from the ``.conflist`` files, ``cni_config``). Nothing above
this package depends on which store it is: the reconciler judges an ``IpamState``
whatever store it came from, and ``ipamguard.fenced`` writes through
``AllocationStore.write`` under the store's ``network_locks``.
"""
