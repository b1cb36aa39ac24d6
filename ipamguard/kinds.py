"""The kinds of finding (a leaf module: the CLI's help imports it cheaply)."""

from __future__ import annotations

LEAKED, STALE, DANGLING = "leaked", "stale", "dangling"
ORPHAN_NETWORK, MALFORMED = "orphan-network", "malformed"
KINDS = (LEAKED, STALE, DANGLING, ORPHAN_NETWORK, MALFORMED)
RELEASABLE_KINDS = frozenset({LEAKED, STALE, ORPHAN_NETWORK})
STOPPED_STATES = frozenset({"exited", "stopped"})
