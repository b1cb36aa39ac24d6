"""CNI's files laid out as podman 4.3 and the host-local plugin write them (checked on
a real podman 4.3.1 with containernetworking-plugins 1.1.1, Debian 12)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ipamguard.fenced import Prober
from ipamguard.stores.cni import CniStore


def cid(n: int) -> str:
    """A container ID as podman makes them (64 hex digits)."""
    return f"{n:02x}" * 32


@dataclass
class Tree:
    data: Path  # /var/lib/cni/networks
    config: Path  # /etc/cni/net.d
    backups: Path

    def network(self, name: str, *subnets: str, write_config: bool = True) -> Path:
        """A podman-made .conflist (bridge + host-local, one range set per subnet) and
        the network's directory with its ``lock``."""
        if write_config:
            ranges = [[{"subnet": s, "gateway": _first(s)}] for s in subnets]
            conflist = {
                "cniVersion": "0.4.0",
                "name": name,
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": f"cni-{name}",
                        "isGateway": True,
                        "ipMasq": True,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "ranges": ranges,
                        },
                        "capabilities": {"ips": True},
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                    {"type": "firewall", "backend": ""},
                    {"type": "tuning"},
                ],
            }
            (self.config / f"{name}.conflist").write_text(json.dumps(conflist, indent=3))
        directory = self.data / name
        directory.mkdir(parents=True, exist_ok=True)
        lock = directory / "lock"
        if not lock.exists():
            lock.touch(mode=0o750)
        return directory

    def allocate(
        self, network: str, ip: str, container: str, *, old: bool = False, range_set: int = 0
    ) -> Path:
        """What host-local's Reserve writes: the address file, then last_reserved_ip.N."""
        directory = self.data / network
        path = directory / ip
        content = container if old else f"{container}\r\neth0"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, content.encode())
        os.close(fd)
        (directory / f"last_reserved_ip.{range_set}").write_text(ip)
        return path

    def store(self, prober: Prober | None = None) -> CniStore:
        """The store over this tree; podman 4.3's CNI lock in the config dir."""
        locks = (str(self.config / "cni.lock"),)
        return CniStore(
            str(self.data), str(self.config), 0.5, str(self.backups), 5,
            network_locks=locks, prober=prober,
        )  # fmt: skip

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the data dir, by relative path (what must stay byte for byte)."""
        found = {}
        for path in sorted(self.data.rglob("*")):
            if path.is_file():
                found[str(path.relative_to(self.data))] = path.read_bytes()
        return found


def _first(subnet: str) -> str:
    import ipaddress

    return str(next(ipaddress.ip_network(subnet).hosts()))


def make_tree(tmp_path: Path) -> Tree:
    tree = Tree(tmp_path / "var-lib-cni" / "networks", tmp_path / "net.d", tmp_path / "backups")
    tree.data.mkdir(parents=True)
    tree.config.mkdir()
    return tree
