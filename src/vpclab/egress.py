"""The egress precedence rule as the emulated cloud applies it (research/aliyun-api.md §7): which
public address the internet sees for traffic an instance starts.

A 1:1 mapping of the source private IP (a fixed public IP or an EIP on the primary NIC) beats SNAT;
otherwise an Available SNAT entry covering the IP, with the VPC route table's 0.0.0.0/0 pointing at
that entry's NAT gateway; otherwise no internet.  The data plane makes the same true in the kernel.
"""

from __future__ import annotations

from .resources.eips import Eip
from .resources.enis import Eni
from .resources.instances import Instance
from .resources.nat import NatGateway, snat_entry_for
from .resources.network import VSwitch, default_route
from .world import World


def source_ip_for(world: World, instance_id: str) -> str | None:
    """The public address connections *started* by the instance leave with, or None (no internet)."""
    inst = world.get(Instance, instance_id)
    if inst is None:
        return None
    if inst.public_ip:
        return inst.public_ip
    eip = world.get(Eip, inst.eip_id) if inst.eip_id else None
    if eip is not None and eip.status in ("InUse", "Unassociating"):
        return eip.ip
    primary = world.get(Eni, inst.eni_ids[0]) if inst.eni_ids else None
    if primary is not None and primary.eip_id:
        peip = world.get(Eip, primary.eip_id)
        if peip is not None and peip.status in ("InUse", "Unassociating"):
            return peip.ip
    return snat_ip_for(world, inst)


def snat_ip_for(world: World, inst: Instance) -> str | None:
    entry = snat_entry_for(world, inst.region_id, inst.private_ip, inst.vswitch_id)
    if entry is None:
        return None
    vsw = world.get(VSwitch, inst.vswitch_id)
    route = default_route(world, vsw.route_table_id) if vsw else None
    ngw = world.get(NatGateway, entry.nat_gateway_id)
    if route is None or route.status != "Available" or route.next_hop_type != "NatGateway" or ngw is None \
            or route.next_hop_id != ngw.id or ngw.status != "Available":
        return None
    return entry.snat_ip.split(",")[0] or None
