"""The egress-path analysis (DESIGN §2.1): where each instance's outbound traffic leaves today, where
it would leave after migration, how it is reached from the internet, and what to do about it.

The cloud's precedence rule (research/aliyun-api.md §7): a 1:1 public mapping of the source address
(fixed public IP, an EIP on that private IP) beats SNAT; SNAT applies only to addresses without one,
covered by an SNAT entry (vSwitch or CIDR) *and* a ``0.0.0.0/0 → NatGateway`` route.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .inventory import Instance, Inventory, Nat, Snat

Kind = Literal["fixed_ip", "eip", "snat", "none"]
Action = Literal["ok", "migrate", "blocked", "skip"]


@dataclass
class Path:
    kind: Kind
    ip: str | None = None
    via: str | None = None  # NAT gateway id, EIP allocation id

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ip": self.ip, "via": self.via}


@dataclass
class Reason:
    code: str
    message: str
    fix: str | None = None  # the option that lifts it, if any

    def text(self) -> str:
        return f"{self.message} ({self.fix})" if self.fix else self.message


@dataclass
class Analysis:
    instance: Instance
    egress_now: Path
    egress_after: Path
    inbound_ip: str | None
    state: str  # fixed_ip | eip_primary | eip_on_eni | private
    eip_allocation_id: str | None
    snat: tuple[Snat, Nat] | None
    action: Action = "ok"
    reasons: list[Reason] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        i = self.instance
        return {"instance_id": i.instance_id, "name": i.name, "vpc_id": i.vpc_id, "vswitch_id": i.vswitch_id,
                "private_ip": i.private_ip, "egress_now": self.egress_now.to_dict(),
                "egress_after": self.egress_after.to_dict(), "inbound_ip": self.inbound_ip, "action": self.action,
                "reasons": [asdict(r) for r in self.reasons], "state": self.state, "status": i.status,
                "instance_type": i.instance_type, "charge_type": i.charge_type,
                "eip_allocation_id": self.eip_allocation_id}


def snat_path(inv: Inventory, inst: Instance) -> tuple[tuple[Snat, Nat] | None, str | None]:
    """The SNAT entry and NAT gateway that carry this instance's traffic, or why none does."""
    addr = ipaddress.ip_address(inst.private_ip) if inst.private_ip else None
    if addr is None:
        return None, "the instance has no private IP"
    best: tuple[int, Snat] | None = None
    for s in inv.snats:
        if s.status != "Available":
            continue
        cidr = s.source_cidr or (inv.vswitches[s.source_vswitch_id].cidr if s.source_vswitch_id in inv.vswitches
                                 else "")
        if not cidr:
            continue
        net = ipaddress.ip_network(cidr)
        nat = inv.nats.get(s.nat_gateway_id)
        if nat is None or nat.vpc_id != inst.vpc_id:
            continue
        if addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, s)
    if best is None:
        return None, "no SNAT entry covers its private IP"
    entry = best[1]
    nat = inv.nats[entry.nat_gateway_id]
    vsw = inv.vswitches.get(inst.vswitch_id)
    table = vsw.route_table_id if vsw else inv.vpc_route_tables.get(inst.vpc_id, "")
    default = next((r for r in inv.routes.get(table, []) if r.dest == "0.0.0.0/0"), None)
    if default is None:
        return None, f"its route table {table} has no 0.0.0.0/0 route (SNAT entry {entry.snat_entry_id} is unused)"
    if default.next_hop_type != "NatGateway" or default.next_hop_id != nat.nat_gateway_id:
        return None, (f"0.0.0.0/0 in {table} points at {default.next_hop_type} {default.next_hop_id}, not at NAT "
                      f"gateway {nat.nat_gateway_id}")
    if nat.status != "Available" or not entry.snat_ips:
        return None, f"NAT gateway {nat.nat_gateway_id} is {nat.status} or has no SNAT IP"
    return (entry, nat), None


def analyze(inv: Inventory, inst: Instance) -> Analysis:
    nics = inv.nics_of(inst.instance_id)
    primary = next((n for n in nics if n.eni_type == "Primary"), None)
    secondary_eips = [n for n in nics if n.eni_type == "Secondary" and n.eip_ip]
    snat, why_not = snat_path(inv, inst)
    after = Path("snat", snat[0].snat_ips[0], snat[1].nat_gateway_id) if snat else Path("none")
    if inst.public_ip:
        now, state, inbound, alloc = Path("fixed_ip", inst.public_ip), "fixed_ip", inst.public_ip, None
    elif inst.eip_ip or (primary is not None and primary.eip_ip):
        ip = inst.eip_ip or (primary.eip_ip if primary else "")
        alloc = inst.eip_allocation_id or (primary.eip_allocation_id if primary else "")
        now, state, inbound = Path("eip", ip, alloc), "eip_primary", ip
    elif secondary_eips:
        nic = secondary_eips[0]
        now, state, inbound, alloc = after, "eip_on_eni", nic.eip_ip, nic.eip_allocation_id
    else:
        now, state, inbound, alloc = after, "private", None, None
    a = Analysis(inst, now, after, inbound, state, alloc or None, snat)
    if state in ("fixed_ip", "eip_primary"):
        a.action = "migrate"
        if snat is None:
            a.reasons.append(Reason("no_snat", f"after migration it would have no outbound internet: {why_not}"))
    elif state == "eip_on_eni":
        a.action = "ok" if snat else "blocked"
        if snat is None:
            a.reasons.append(Reason("no_snat", f"inbound uses the EIP on an ENI but outbound has no path: {why_not}"))
    elif snat is None:
        a.action = "skip"
        a.reasons.append(Reason("no_public_ip", f"no public IP, and no internet egress at all ({why_not})"))
    else:
        a.action = "ok"
    return a
