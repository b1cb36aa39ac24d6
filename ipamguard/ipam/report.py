"""ipam.db state as JSON documents and as readable text."""

from __future__ import annotations

from typing import Any

from ipamguard.ipam.model import Allocation, IpamState


def allocation_to_json(allocation: Allocation) -> dict[str, str]:
    return {
        "network": allocation.network,
        "subnet": allocation.subnet,
        "ip": allocation.ip,
        "container_id": allocation.container_id,
    }


def state_to_json(state: IpamState, db: str) -> dict[str, Any]:
    return {
        "db": db,
        "txid": state.txid,
        "networks": [
            {
                "name": network.name,
                "subnets": [
                    {
                        "subnet": subnet.cidr,
                        "last_ip": subnet.last_ip,
                        "allocations": [
                            {"ip": a.ip, "container_id": a.container_id} for a in subnet.allocations
                        ],
                    }
                    for subnet in network.subnets
                ],
                "ids": [{"container_id": e.container_id, "ips": list(e.ips)} for e in network.ids],
            }
            for network in state.networks
        ],
        "malformed": [
            {"network": m.network, "subnet": m.subnet, "key": m.key, "reason": m.reason}
            for m in state.malformed
        ],
    }


def state_to_text(state: IpamState, db: str) -> str:
    lines = [f"{db} (txid {state.txid})"]
    if not state.networks:
        lines.append("  no networks")
    for network in state.networks:
        lines.append(f"network {network.name}")
        for subnet in network.subnets:
            last = f", last IP {subnet.last_ip}" if subnet.last_ip else ""
            lines.append(f"  subnet {subnet.cidr} ({len(subnet.allocations)} allocated{last})")
            lines.extend(f"    {a.ip:<15} {a.container_id}" for a in subnet.allocations)
        lines.append(f"  ids ({len(network.ids)} containers)")
        lines.extend(f"    {e.container_id} {' '.join(e.ips)}" for e in network.ids)
    if state.malformed:
        lines.append("malformed entries")
        lines.extend(
            f"  {m.network} {m.subnet or '-'} {m.key}: {m.reason}" for m in state.malformed
        )
    return "\n".join(lines) + "\n"
