"""NAT gateways (enhanced, internet), their SNAT entries and (read-only) DNAT tables.

Creating a NAT gateway adds ``0.0.0.0/0 → NatGateway`` to the VPC's system route table when no
default route exists (aliyun-api.md §4.2), which is what makes SNAT work for the VPC.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .. import errors
from ..world import Resource, World, register, transition
from .network import VSwitch, create_route_entry, default_route, get_vpc, get_vswitch, take_ip


@register
@dataclass
class NatGateway(Resource):
    KIND = "nat_gateway"
    PREFIX = "ngw"
    vpc_id: str = ""
    vswitch_id: str = ""
    zone_id: str = ""
    name: str = ""
    description: str = ""
    status: str = "Creating"
    spec: str = ""
    nat_type: str = "Enhanced"
    network_type: str = "internet"
    internet_charge_type: str = "PayByLcu"
    eip_bind_mode: str = "MULTI_BINDED"
    snat_table_id: str = ""
    forward_table_id: str = ""
    private_ip: str = ""


@register
@dataclass
class SnatEntry(Resource):
    KIND = "snat_entry"
    PREFIX = "snat"
    snat_table_id: str = ""
    nat_gateway_id: str = ""
    snat_ip: str = ""
    source_vswitch_id: str = ""
    source_cidr: str = ""
    name: str = ""
    status: str = "Pending"
    eip_affinity: int = 0


def get_nat(world: World, region_id: str, ngw_id: str | None) -> NatGateway:
    ngw = world.get(NatGateway, ngw_id, region_id)
    if ngw is None:
        raise errors.ApiError("InvalidNatGatewayId.NotFound", f"The specified NAT gateway does not exist. ({ngw_id})",
                              404)
    return ngw


def nat_by_snat_table(world: World, region_id: str, table_id: str | None) -> NatGateway:
    for ngw in world.all(NatGateway, region_id):
        if ngw.snat_table_id == table_id:
            return ngw
    raise errors.ApiError("InvalidSnatTableId.NotFound", "Specified SNAT table does not exist.", 404)


def nat_by_forward_table(world: World, region_id: str, table_id: str | None) -> NatGateway:
    for ngw in world.all(NatGateway, region_id):
        if ngw.forward_table_id == table_id:
            return ngw
    raise errors.ApiError("InvalidForwardTableId.NotFound", "Specified forward table does not exist.", 404)


def create_nat_gateway(world: World, region_id: str, vpc_id: str, vswitch_id: str, name: str = "",
                       description: str = "", nat_type: str = "Enhanced", network_type: str = "internet",
                       internet_charge_type: str = "PayByLcu", eip_bind_mode: str = "MULTI_BINDED") -> NatGateway:
    vpc = get_vpc(world, region_id, vpc_id)
    vsw: VSwitch = get_vswitch(world, region_id, vswitch_id)
    if vsw.vpc_id != vpc.id:
        raise errors.ApiError("InvalidVSwitchId.NotBelongToVpc", "The vSwitch does not belong to the VPC.", 400)
    if nat_type != "Enhanced":
        raise errors.ApiError("InvalidParameter.NatType", "Only enhanced NAT gateways can be created.", 400)
    if network_type != "internet":
        raise errors.ApiError("InvalidParameter.NetworkType", "The lab emulates internet NAT gateways only.", 400)
    ngw = NatGateway(id=world.new_id("ngw", region_id), region_id=region_id, vpc_id=vpc.id, vswitch_id=vsw.id,
                     zone_id=vsw.zone_id, name=name, description=description, nat_type=nat_type,
                     network_type=network_type, internet_charge_type=internet_charge_type,
                     eip_bind_mode=eip_bind_mode)
    ngw.snat_table_id = world.new_id("stb", region_id)
    ngw.forward_table_id = world.new_id("ftb", region_id)
    ngw.private_ip = take_ip(world, vsw)
    world.add(ngw)
    world.schedule(ngw, "nat.ready", "nat.create")
    return ngw


@transition("nat.ready")
def _nat_ready(world: World, ngw: NatGateway, data: dict) -> None:
    ngw.status = "Available"
    from .network import Vpc

    vpc = world.get(Vpc, ngw.vpc_id)
    if vpc is not None and default_route(world, vpc.route_table_id) is None:
        create_route_entry(world, ngw.region_id, vpc.route_table_id, "0.0.0.0/0", "NatGateway", ngw.id,
                           system=False)


def _covers(entry: SnatEntry, vsw_cidr_of: dict[str, str]) -> ipaddress.IPv4Network:
    cidr = entry.source_cidr or vsw_cidr_of.get(entry.source_vswitch_id, "0.0.0.0/32")
    return ipaddress.ip_network(cidr)  # type: ignore[return-value]


def create_snat_entry(world: World, region_id: str, snat_table_id: str, snat_ip: str, source_vswitch_id: str = "",
                      source_cidr: str = "", name: str = "", eip_affinity: int = 0) -> SnatEntry:
    from .eips import nat_eips

    ngw = nat_by_snat_table(world, region_id, snat_table_id)
    if ngw.status != "Available":
        raise errors.ApiError("IncorrectStatus.NATGW", f"The NAT gateway {ngw.id} is {ngw.status}.", 400)
    if bool(source_vswitch_id) == bool(source_cidr):
        raise errors.ApiError("INVALID_PARAMETER", "Specify exactly one of SourceVSwitchId and SourceCIDR.", 400)
    ips = [s.strip() for s in snat_ip.split(",") if s.strip()]
    if not ips:
        raise errors.missing("SnatIp")
    bound = {e.ip for e in nat_eips(world, ngw.id) if e.status == "InUse"}
    for ip in ips:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise errors.ApiError("InvalidSnatIp.Malformed", f"The SnatIp {ip} is malformed.", 400) from None
        if ip not in bound:
            raise errors.ApiError("InvalidSnatIp.NotFound", "Specified SnatIp does not found on the NAT Gateway", 404)
    vsw_cidrs = {v.id: v.cidr for v in world.all(VSwitch, region_id)}
    if source_vswitch_id:
        vsw = get_vswitch(world, region_id, source_vswitch_id, "SourceVSwitchId")
        if vsw.vpc_id != ngw.vpc_id:
            raise errors.ApiError("InvalidVSwitchId.NotFound", "The vSwitch is not in the NAT gateway's VPC.", 404)
        new_net = ipaddress.ip_network(vsw.cidr)
    else:
        try:
            new_net = ipaddress.ip_network(source_cidr, strict=True)
        except ValueError:
            raise errors.ApiError("INVALID_PARAMETER", f"SourceCIDR {source_cidr} is not a valid CIDR block.",
                                  400) from None
    for other in world.all(SnatEntry, region_id):
        if other.snat_table_id != snat_table_id:
            continue
        if source_vswitch_id and other.source_vswitch_id == source_vswitch_id:
            raise errors.ApiError("Forbidden.SourceVSwitchId.Duplicated", "The vSwitch already has an SNAT entry.",
                                  400)
        if _covers(other, vsw_cidrs) == new_net:
            raise errors.ApiError("OperationUnsupported.CidrConflict", f"An SNAT entry for {new_net} already "
                                  "exists.", 400)
    entry = SnatEntry(id=world.new_id("snat", region_id), region_id=region_id, snat_table_id=snat_table_id,
                      nat_gateway_id=ngw.id, snat_ip=",".join(ips), source_vswitch_id=source_vswitch_id,
                      source_cidr="" if source_vswitch_id else str(new_net), name=name, eip_affinity=eip_affinity)
    world.add(entry)
    world.schedule(entry, "snat.ready", "snat.create")
    return entry


@transition("snat.ready")
def _snat_ready(world: World, entry: SnatEntry, data: dict) -> None:
    entry.status = "Available"


def delete_snat_entry(world: World, region_id: str, snat_table_id: str, snat_entry_id: str) -> SnatEntry:
    nat_by_snat_table(world, region_id, snat_table_id)
    entry = world.get(SnatEntry, snat_entry_id, region_id)
    if entry is None or entry.snat_table_id != snat_table_id:
        raise errors.ApiError("InvalidSnatEntryId.NotFound", f"The specified SNAT entry does not exist. "
                              f"({snat_entry_id})", 404)
    if entry.status != "Available":
        raise errors.ApiError("IncorretSnatEntryStatus", f"The SNAT entry is {entry.status}.", 400)
    entry.status = "Deleting"
    world.schedule(entry, "snat.deleted", "snat.delete")
    return entry


@transition("snat.deleted")
def _snat_deleted(world: World, entry: SnatEntry, data: dict) -> None:
    world.remove(entry)


def snat_entry_for(world: World, region_id: str, private_ip: str, vswitch_id: str) -> SnatEntry | None:
    """The Available SNAT entry that covers a source address: most specific CIDR first."""
    vsw_cidrs = {v.id: v.cidr for v in world.all(VSwitch, region_id)}
    addr = ipaddress.ip_address(private_ip)
    best: tuple[int, SnatEntry] | None = None
    for entry in world.all(SnatEntry, region_id):
        if entry.status != "Available":
            continue
        net = _covers(entry, vsw_cidrs)
        if addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, entry)
    return best[1] if best else None


def reindex(world: World) -> None:
    for ngw in world.all(NatGateway):
        world.used_ips[ngw.vswitch_id].add(ngw.private_ip)
