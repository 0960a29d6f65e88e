"""VPCs, vSwitches, route tables and route entries.

vSwitch address accounting follows the cloud: the first address and the last three of every
IPv4 CIDR are reserved, the gateway is broadcast − 2 (``.253`` of a /24), so the assignable range
is [network + 1, broadcast − 3] (aliyun-api.md §4.1).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from .. import errors
from ..world import Resource, World, register, transition


@register
@dataclass
class Vpc(Resource):
    KIND = "vpc"
    PREFIX = "vpc"
    name: str = ""
    description: str = ""
    cidr: str = ""
    status: str = "Pending"
    is_default: bool = False
    vrouter_id: str = ""
    route_table_id: str = ""


@register
@dataclass
class VSwitch(Resource):
    KIND = "vswitch"
    PREFIX = "vsw"
    vpc_id: str = ""
    zone_id: str = ""
    cidr: str = ""
    name: str = ""
    description: str = ""
    status: str = "Pending"
    route_table_id: str = ""
    is_default: bool = False


@register
@dataclass
class RouteTable(Resource):
    KIND = "route_table"
    PREFIX = "vtb"
    vpc_id: str = ""
    vrouter_id: str = ""
    name: str = ""
    description: str = ""
    table_type: str = "System"
    status: str = "Available"


@register
@dataclass
class RouteEntry(Resource):
    KIND = "route_entry"
    PREFIX = "rte"
    route_table_id: str = ""
    dest_cidr: str = ""
    next_hop_type: str = ""
    next_hop_id: str = ""
    entry_type: str = "Custom"  # Custom | System
    origin: str = "CustomCreate"
    name: str = ""
    description: str = ""
    status: str = "Pending"
    modified: float = 0.0


# --- address accounting ---------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(cidr)  # type: ignore[return-value]


def vswitch_net(vsw: VSwitch) -> ipaddress.IPv4Network:
    return _net(vsw.cidr)


def gateway_of(vsw: VSwitch) -> str:
    return str(vswitch_net(vsw).broadcast_address - 2)


def assignable_count(vsw: VSwitch) -> int:
    return max(vswitch_net(vsw).num_addresses - 4, 0)


def available_ip_count(world: World, vsw: VSwitch) -> int:
    return assignable_count(vsw) - len(world.used_ips[vsw.id])


def is_assignable(vsw: VSwitch, ip: str) -> bool:
    net = vswitch_net(vsw)
    try:
        addr = int(ipaddress.IPv4Address(ip))
    except ValueError:
        return False
    return int(net.network_address) < addr < int(net.broadcast_address) - 2


def take_ip(world: World, vsw: VSwitch, wanted: str | None = None) -> str:
    """Reserve a private IP in the vSwitch (the wanted one, or the lowest free)."""
    used = world.used_ips[vsw.id]
    if wanted:
        if not is_assignable(vsw, wanted):
            raise errors.ApiError("InvalidIp.Address", f"The specified IP address {wanted} is not an assignable "
                                  f"address of vSwitch {vsw.id} ({vsw.cidr}).", 403)
        if wanted in used:
            raise errors.ApiError("InvalidPrivateIpAddress.Duplicated", "Specified private IP address is "
                                  "duplicated.", 400)
        used.add(wanted)
        return wanted
    net = vswitch_net(vsw)
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 3
    size = last - first + 1
    if size <= 0 or len(used) >= size:
        raise errors.ApiError("InvalidVSwitchId.IpNotEnough", f"The specified vSwitch {vsw.id} does not have "
                              "enough IP addresses.", 403)
    start = world.ip_hint.get(vsw.id, 0)
    for i in range(size):
        off = (start + i) % size
        n = first + off
        ip = f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        if ip not in used:
            used.add(ip)
            world.ip_hint[vsw.id] = off + 1
            return ip
    raise errors.ApiError("InvalidVSwitchId.IpNotEnough", f"The specified vSwitch {vsw.id} does not have enough "
                          "IP addresses.", 403)


def free_ip(world: World, vswitch_id: str, ip: str) -> None:
    world.used_ips[vswitch_id].discard(ip)


# --- lookups --------------------------------------------------------------------------------

def get_vpc(world: World, region_id: str, vpc_id: str | None, param: str = "VpcId") -> Vpc:
    vpc = world.get(Vpc, vpc_id, region_id)
    if vpc is None:
        raise errors.ApiError("InvalidVpcID.NotFound", f"Specified VPC does not exist. ({param}={vpc_id})", 404)
    return vpc


def get_vswitch(world: World, region_id: str, vsw_id: str | None, param: str = "VSwitchId") -> VSwitch:
    vsw = world.get(VSwitch, vsw_id, region_id)
    if vsw is None:
        raise errors.ApiError("InvalidVSwitchId.NotFound", f"The specified vSwitch does not exist. "
                              f"({param}={vsw_id})", 404)
    return vsw


def get_route_table(world: World, region_id: str, rt_id: str | None) -> RouteTable:
    rt = world.get(RouteTable, rt_id, region_id)
    if rt is None:
        raise errors.ApiError("InvalidRouteTable.NotFound", f"The specified route table does not exist. ({rt_id})",
                              404)
    return rt


def vswitches_of(world: World, vpc_id: str) -> list[VSwitch]:
    return [v for v in world.all(VSwitch) if v.vpc_id == vpc_id]


def entries_of(world: World, route_table_id: str) -> list[RouteEntry]:
    return [e for e in world.all(RouteEntry) if e.route_table_id == route_table_id]


def default_route(world: World, route_table_id: str) -> RouteEntry | None:
    return next((e for e in entries_of(world, route_table_id) if e.dest_cidr == "0.0.0.0/0"), None)


# --- operations -----------------------------------------------------------------------------

def _parse_private_cidr(cidr: str, param: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        raise errors.ApiError("InvalidCidrBlock.Malformed", f"Specified CIDR block is not valid. ({param}={cidr})",
                              400) from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise errors.ApiError("InvalidCidrBlock.Malformed", f"Specified CIDR block is not valid. ({param}={cidr})",
                              400)
    return net


def create_vpc(world: World, region_id: str, cidr: str = "172.16.0.0/12", name: str = "", description: str = "",
               is_default: bool = False) -> Vpc:
    net = _parse_private_cidr(cidr, "CidrBlock")
    if not (8 <= net.prefixlen <= 28) or not net.is_private:
        raise errors.ApiError("InvalidCidrBlock.Malformed", f"Specified CIDR block is not valid: a VPC takes a "
                              f"private /8 to /28 block. ({cidr})", 400)
    vpc = Vpc(id=world.new_id("vpc", region_id), region_id=region_id, cidr=str(net), name=name,
              description=description, is_default=is_default)
    vpc.vrouter_id = world.new_id("vrt", region_id)
    rt = RouteTable(id=world.new_id("vtb", region_id), region_id=region_id, vpc_id=vpc.id,
                    vrouter_id=vpc.vrouter_id, table_type="System")
    vpc.route_table_id = rt.id
    world.add(vpc)
    world.add(rt)
    world.schedule(vpc, "vpc.ready", "vpc.create")
    return vpc


@transition("vpc.ready")
def _vpc_ready(world: World, vpc: Vpc, data: dict) -> None:
    vpc.status = "Available"


def create_vswitch(world: World, region_id: str, vpc_id: str, zone_id: str, cidr: str, name: str = "",
                   description: str = "") -> VSwitch:
    vpc = get_vpc(world, region_id, vpc_id)
    if world.catalogue.zone(region_id, zone_id) is None:
        raise errors.ApiError("InvalidZoneId.NotFound", f"The specified zone does not exist. ({zone_id})", 404)
    net = _parse_private_cidr(cidr, "CidrBlock")
    vnet = ipaddress.ip_network(vpc.cidr)
    if not net.subnet_of(vnet):  # type: ignore[arg-type]
        raise errors.ApiError("InvalidCidrBlock.Malformed", f"The vSwitch CIDR block {cidr} is not within the VPC "
                              f"CIDR block {vpc.cidr}.", 400)
    if not (16 <= net.prefixlen <= 29):
        raise errors.ApiError("InvalidCidrBlock.Malformed", f"A vSwitch takes a /16 to /29 block. ({cidr})", 400)
    for other in vswitches_of(world, vpc.id):
        if ipaddress.ip_network(other.cidr).overlaps(net):
            raise errors.ApiError("InvalidCidrBlock.Overlapped", f"Specified CIDR block {cidr} overlaps with "
                                  f"vSwitch {other.id} ({other.cidr}).", 400)
    vsw = VSwitch(id=world.new_id("vsw", region_id), region_id=region_id, vpc_id=vpc.id, zone_id=zone_id,
                  cidr=str(net), name=name, description=description, route_table_id=vpc.route_table_id)
    world.add(vsw)
    world.schedule(vsw, "vswitch.ready", "vswitch.create")
    return vsw


@transition("vswitch.ready")
def _vswitch_ready(world: World, vsw: VSwitch, data: dict) -> None:
    vsw.status = "Available"


_NEXT_HOP_TYPES = ("Instance", "HaVip", "VpnGateway", "NatGateway", "NetworkInterface", "RouterInterface",
                   "IPv6Gateway", "Attachment", "Ipv4Gateway", "GatewayEndpoint", "CenBasic", "Ecr")


def create_route_entry(world: World, region_id: str, route_table_id: str, dest_cidr: str, next_hop_type: str,
                       next_hop_id: str, name: str = "", description: str = "", system: bool = False) -> RouteEntry:
    rt = get_route_table(world, region_id, route_table_id)
    try:
        net = ipaddress.ip_network(dest_cidr, strict=True)
    except ValueError:
        raise errors.ApiError("InvalidDestinationCidrBlock.Malformed", f"The specified DestinationCidrBlock is not "
                              f"valid. ({dest_cidr})", 400) from None
    if next_hop_type not in _NEXT_HOP_TYPES:
        raise errors.ApiError("InvalidNextHopType.ValueNotSupported", f"The specified NextHopType is not supported. "
                              f"({next_hop_type})", 400)
    if next_hop_type == "NatGateway":
        from .nat import NatGateway

        ngw = world.get(NatGateway, next_hop_id, region_id)
        if ngw is None:
            raise errors.ApiError("InvalidNextHopId.NotFound", f"The specified next hop does not exist. "
                                  f"({next_hop_id})", 404)
        if ngw.vpc_id != rt.vpc_id:
            raise errors.ApiError("InvalidNextHop.VpcMismatch", "The next hop does not belong to the VPC of the "
                                  "route table.", 400)
    for e in entries_of(world, rt.id):
        if e.dest_cidr == str(net):
            raise errors.ApiError("InvalidCIDRBlock.Duplicate", f"Specified CIDR block {dest_cidr} already exists "
                                  "in the route table.", 400)
        if e.status != "Available":
            raise errors.ApiError("IncorrectRouteEntryStatus", "There is a route entry in a pending state in the "
                                  "route table; try again later.", 400)
    entry = RouteEntry(id=world.new_id("rte", region_id), region_id=region_id, route_table_id=rt.id,
                       dest_cidr=str(net), next_hop_type=next_hop_type, next_hop_id=next_hop_id,
                       entry_type="System" if system else "Custom",
                       origin="SystemCreate" if system else "CustomCreate", name=name, description=description)
    entry.modified = world.clock.now()
    world.add(entry)
    world.schedule(entry, "route.ready", "route.create")
    return entry


@transition("route.ready")
def _route_ready(world: World, entry: RouteEntry, data: dict) -> None:
    entry.status = "Available"
    entry.modified = world.clock.now()


def delete_route_entry(world: World, region_id: str, route_table_id: str | None, route_entry_id: str | None,
                       dest_cidr: str | None, next_hop_id: str | None) -> RouteEntry:
    entry = None
    if route_entry_id:
        entry = world.get(RouteEntry, route_entry_id, region_id)
    elif route_table_id and dest_cidr:
        entry = next((e for e in entries_of(world, route_table_id) if e.dest_cidr == dest_cidr
                      and (not next_hop_id or e.next_hop_id == next_hop_id)), None)
    else:
        raise errors.missing("RouteEntryId")
    if entry is None:
        raise errors.ApiError("InvalidRouteEntry.NotFound", "The specified route entry does not exist.", 404)
    if entry.status != "Available":
        raise errors.ApiError("IncorrectRouteEntryStatus", f"The route entry is {entry.status}; try again later.",
                              400)
    if entry.entry_type == "System" and entry.next_hop_type == "local":
        raise errors.ApiError("OperationDenied", "A system route cannot be deleted.", 400)
    entry.status = "Deleting"
    world.schedule(entry, "route.deleted", "route.delete")
    return entry


@transition("route.deleted")
def _route_deleted(world: World, entry: RouteEntry, data: dict) -> None:
    world.remove(entry)


def reindex(world: World) -> None:
    world.ip_hint.clear()
