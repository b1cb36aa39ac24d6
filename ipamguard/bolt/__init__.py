"""A bbolt (BoltDB) engine in pure Python: read and write the files Go's bbolt writes.

db = DB.open(path, readonly=False)
with db.update() as tx:
    tx.bucket(b"net").bucket(b"10.88.0.0/16").delete(ip)
"""

from ipamguard.bolt.bucket import Bucket
from ipamguard.bolt.check import load_snapshot
from ipamguard.bolt.db import DB, create
from ipamguard.bolt.snapshot import Snapshot
from ipamguard.bolt.tx import Tx

__all__ = ["DB", "Bucket", "Snapshot", "Tx", "create", "load_snapshot"]
