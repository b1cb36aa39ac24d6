"""netavark's ipam.db: the typed model (``model``), paths, reports, releasing.

Import the submodules directly; this package imports nothing, so that the CLI
starts fast.
"""
