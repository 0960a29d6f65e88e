"""VPC 2016-04-28 actions (VPCs, vSwitches, routes, EIPs, NAT gateways, tags)."""

from __future__ import annotations

from typing import Any

from .. import errors
from ..clock import iso_second
from ..resources import eips, nat, network, tags
from ..resources.eips import Eip
from ..resources.nat import NatGateway, SnatEntry
from ..resources.network import RouteEntry, RouteTable, Vpc, VSwitch
from ..world import World
from . import Call, action, by_seq, next_tokens, page_numbers, vpc_tags
from .ecs import list_tags

S = "vpc"


@action(S, "DescribeRegions")
def describe_regions(c: Call) -> dict[str, Any]:
    lang = c.params.choice("AcceptLanguage", ("zh-CN", "en-US", "ja"), default="zh-CN",
                           code="InvalidAcceptLanguage.NotFound", status=404)
    return {"Regions": {"Region": [
        {"RegionId": r.region_id, "LocalName": r.local_name if lang == "zh-CN" else r.local_name_en,
         "RegionEndpoint": r.vpc_endpoint} for r in c.world.catalogue.regions.values()]}}


# --- VPCs and vSwitches --------------------------------------------------------------------------

@action(S, "CreateVpc", client_token=True)
def create_vpc(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    t = p.tags()
    tags.validate(t)
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    vpc = network.create_vpc(c.world, region, p.str("CidrBlock", default="172.16.0.0/12") or "172.16.0.0/12",
                             name=p.str("VpcName", default="") or "",
                             description=p.str("Description", default="") or "")
    vpc.tags = [[k, v] for k, v in t]
    return {"VpcId": vpc.id, "VRouterId": vpc.vrouter_id, "RouteTableId": vpc.route_table_id, "ResourceGroupId": ""}


def render_vpc(world: World, vpc: Vpc) -> dict[str, Any]:
    return {"VpcId": vpc.id, "VpcName": vpc.name, "Description": vpc.description, "CidrBlock": vpc.cidr,
            "Status": vpc.status, "IsDefault": vpc.is_default, "RegionId": vpc.region_id, "VRouterId": vpc.vrouter_id,
            "CreationTime": iso_second(vpc.created), "ResourceGroupId": "", "Ipv6CidrBlock": "",
            "EnabledIpv6": False, "CenStatus": "", "DhcpOptionsSetId": "", "DhcpOptionsSetStatus": "",
            "VSwitchIds": {"VSwitchId": [v.id for v in network.vswitches_of(world, vpc.id)]},
            "RouterTableIds": {"RouterTableIds": [vpc.route_table_id]},
            "NatGatewayIds": {"NatGatewayIds": [n.id for n in world.all(NatGateway, vpc.region_id)
                                                if n.vpc_id == vpc.id]},
            "SecondaryCidrBlocks": {"SecondaryCidrBlock": []}, "UserCidrs": {"UserCidr": []},
            "Tags": vpc_tags(vpc)}


@action(S, "DescribeVpcs")
def describe_vpcs(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    ids = p.comma_list("VpcId", limit=20)
    name = p.str("VpcName")
    is_default = p.str("IsDefault")
    want = p.tags()
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    out = [v for v in c.world.all(Vpc, region)
           if (not ids or v.id in ids) and (not name or v.name == name)
           and (is_default is None or v.is_default == p.bool("IsDefault")) and (not want or tags.matches(v, want))]
    page, extra = page_numbers(by_seq(out), p, 50)
    return {"Vpcs": {"Vpc": [render_vpc(c.world, v) for v in page]}, **extra}


@action(S, "CreateVSwitch", client_token=True)
def create_vswitch(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    t = p.tags()
    tags.validate(t)
    vsw = network.create_vswitch(c.world, region, p.req("VpcId"), p.req("ZoneId"), p.req("CidrBlock"),
                                 name=p.str("VSwitchName", default="") or "",
                                 description=p.str("Description", default="") or "")
    vsw.tags = [[k, v] for k, v in t]
    return {"VSwitchId": vsw.id}


def render_vswitch(world: World, vsw: VSwitch) -> dict[str, Any]:
    return {"VSwitchId": vsw.id, "VSwitchName": vsw.name, "Description": vsw.description, "VpcId": vsw.vpc_id,
            "ZoneId": vsw.zone_id, "CidrBlock": vsw.cidr, "Status": vsw.status, "IsDefault": vsw.is_default,
            "AvailableIpAddressCount": network.available_ip_count(world, vsw),
            "CreationTime": iso_second(vsw.created), "ResourceGroupId": "", "NetworkAclId": "",
            "Ipv6CidrBlock": "", "EnabledIpv6": False, "ShareType": "",
            "RouteTable": {"RouteTableId": vsw.route_table_id, "RouteTableType": "System"},
            "Tags": vpc_tags(vsw)}


@action(S, "DescribeVSwitches")
def describe_vswitches(c: Call) -> dict[str, Any]:
    p = c.params
    vpc_id = p.str("VpcId")
    region = c.region(required=not vpc_id)
    if not region and vpc_id:
        vpc = c.world.get(Vpc, vpc_id)
        region = vpc.region_id if vpc else ""
    filters = {"id": p.str("VSwitchId"), "zone_id": p.str("ZoneId"), "name": p.str("VSwitchName"),
               "route_table_id": p.str("RouteTableId"), "vpc_id": vpc_id}
    want = p.tags()
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    out = [v for v in c.world.all(VSwitch, region or None)
           if not any(val and getattr(v, k) != val for k, val in filters.items())
           and (not want or tags.matches(v, want))]
    page, extra = page_numbers(by_seq(out), p, 50)
    return {"VSwitches": {"VSwitch": [render_vswitch(c.world, v) for v in page]}, **extra}


# --- routes ---------------------------------------------------------------------------------------

def render_route_table(world: World, rt: RouteTable) -> dict[str, Any]:
    return {"RouteTableId": rt.id, "RouteTableName": rt.name, "Description": rt.description,
            "RouteTableType": rt.table_type, "RouterId": rt.vrouter_id, "RouterType": "VRouter", "VpcId": rt.vpc_id,
            "Status": rt.status, "AssociateType": "VSwitch", "CreationTime": iso_second(rt.created),
            "ResourceGroupId": "", "RoutePropagationEnable": True,
            "VSwitchIds": {"VSwitchId": [v.id for v in world.all(VSwitch, rt.region_id)
                                         if v.route_table_id == rt.id]},
            "GatewayIds": {"GatewayIds": []}, "Tags": vpc_tags(rt)}


@action(S, "DescribeRouteTableList")
def describe_route_table_list(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    router_type = p.choice("RouterType", ("VRouter", "VBR"), default="VRouter")
    filters = {"vpc_id": p.str("VpcId"), "id": p.str("RouteTableId"), "name": p.str("RouteTableName"),
               "table_type": p.str("RouteTableType"), "vrouter_id": p.str("RouterId")}
    want = p.tags()
    out = [] if router_type == "VBR" else [
        rt for rt in c.world.all(RouteTable, region)
        if not any(val and getattr(rt, k) != val for k, val in filters.items())
        and (not want or tags.matches(rt, want))]
    page, extra = page_numbers(by_seq(out), p, 50)
    return {"RouterTableList": {"RouterTableListType": [render_route_table(c.world, rt) for rt in page]}, **extra}


def render_route_entry(e: RouteEntry) -> dict[str, Any]:
    return {"RouteEntryId": e.id, "RouteEntryName": e.name, "Description": e.description,
            "RouteTableId": e.route_table_id, "DestinationCidrBlock": e.dest_cidr, "Type": e.entry_type,
            "Status": e.status, "IpVersion": "ipv4", "Origin": e.origin, "GmtModified": iso_second(e.modified),
            "ServiceType": "",
            "NextHops": {"NextHop": [{"NextHopType": e.next_hop_type, "NextHopId": e.next_hop_id, "Enabled": 1,
                                      "Weight": 0, "NextHopRegionId": e.region_id,
                                      "NextHopRelatedInfo": {"InstanceId": "", "InstanceType": "", "RegionId": ""}}]}}


@action(S, "DescribeRouteEntryList")
def describe_route_entry_list(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    rt = network.get_route_table(c.world, region, p.req("RouteTableId"))
    dests = p.repeat("DestCidrBlockList", limit=20)
    filters = {"id": p.str("RouteEntryId"), "dest_cidr": p.str("DestinationCidrBlock"),
               "name": p.str("RouteEntryName"), "entry_type": p.str("RouteEntryType"),
               "next_hop_id": p.str("NextHopId"), "next_hop_type": p.str("NextHopType")}
    out = [e for e in network.entries_of(c.world, rt.id)
           if not any(val and getattr(e, k) != val for k, val in filters.items())
           and (not dests or e.dest_cidr in dests)]
    items = by_seq(out)
    page, extra = next_tokens(items, p, 1, 100, 10, max_name="MaxResult")
    return {"RouteEntrys": {"RouteEntry": [render_route_entry(e) for e in page]}, "TotalCount": len(items), **extra}


@action(S, "CreateRouteEntry", client_token=True)
def create_route_entry(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    if p.structs("NextHopList"):
        raise errors.ApiError("InvalidParameter", "The lab does not emulate ECMP NextHopList routes.", 400)
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    entry = network.create_route_entry(c.world, region, p.req("RouteTableId"), p.req("DestinationCidrBlock"),
                                       p.str("NextHopType", default="Instance") or "Instance", p.req("NextHopId"),
                                       name=p.str("RouteEntryName", default="") or "",
                                       description=p.str("Description", default="") or "")
    return {"RouteEntryId": entry.id}


@action(S, "DeleteRouteEntry")
def delete_route_entry(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    network.delete_route_entry(c.world, region, p.str("RouteTableId"), p.str("RouteEntryId"),
                               p.str("DestinationCidrBlock"), p.str("NextHopId"))
    return {}


# --- EIPs -----------------------------------------------------------------------------------------

@action(S, "AllocateEipAddress", client_token=True)
def allocate_eip_address(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    t = p.tags()
    tags.validate(t)
    eip = eips.allocate(c.world, region, bandwidth=p.str("Bandwidth", default="5") or "5",
                        internet_charge_type=p.str("InternetChargeType", default="PayByBandwidth") or "PayByBandwidth",
                        charge_type=p.str("InstanceChargeType", default="PostPaid") or "PostPaid",
                        isp=p.str("ISP", default="BGP") or "BGP", name=p.str("Name", default="") or "",
                        description=p.str("Description", default="") or "", tags=t)
    return {"AllocationId": eip.id, "EipAddress": eip.ip, "ResourceGroupId": ""}


def render_eip(world: World, eip: Eip) -> dict[str, Any]:
    return {"AllocationId": eip.id, "IpAddress": eip.ip, "Status": eip.status, "InstanceId": eip.instance_id,
            "InstanceType": eip.instance_type, "InstanceRegionId": eip.region_id if eip.instance_id else "",
            "PrivateIpAddress": eip.private_ip, "Mode": eip.mode if eip.instance_id else "",
            "Bandwidth": eip.bandwidth, "EipBandwidth": eip.bandwidth, "InternetChargeType": eip.internet_charge_type,
            "ChargeType": eip.charge_type, "AllocationTime": iso_second(eip.allocation_time or eip.created),
            "ExpiredTime": "", "RegionId": eip.region_id, "Name": eip.name, "Description": eip.description,
            "ISP": eip.isp, "Netmode": "public", "BusinessStatus": "Normal", "OperationLocks": {"LockReason": []},
            "BandwidthPackageId": "", "BandwidthPackageType": "", "BandwidthPackageBandwidth": "",
            "DeletionProtection": False, "ResourceGroupId": "", "SecondLimited": False, "HDMonitorStatus": "OFF",
            "ServiceManaged": 0, "VpcId": "", "Zone": "", "Tags": vpc_tags(eip)}


_EIP_STATUSES = ("Associating", "Unassociating", "InUse", "Available", "Releasing")


def eip_region(c: Call) -> str:
    """The EIP APIs name an unknown region their own way (api §4.3, §4.6, §4.7)."""
    try:
        return c.region()
    except errors.ApiError as e:
        if e.code == "InvalidRegionId.NotFound":
            raise errors.ApiError("Forbidden.RegionNotFound", "Specified region is not found during access "
                                  "authentication.", 404) from None
        raise


@action(S, "DescribeEipAddresses")
def describe_eip_addresses(c: Call) -> dict[str, Any]:
    region = eip_region(c)
    p = c.params
    p.choice("LockReason", ("financial", "security"), code="InvalidLockReason.NotFound", status=404)
    ids = p.comma_list("AllocationId", limit=50)
    ips = p.comma_list("EipAddress", limit=50)
    status = p.choice("Status", _EIP_STATUSES)
    atype = p.choice("AssociatedInstanceType", ("EcsInstance", "SlbInstance", "Nat", "HaVip", "NetworkInterface",
                                                "IpAddress"), code="InvalidIAssociatedInstanceType.ValueNotSupported")
    aid = p.str("AssociatedInstanceId")
    charge = p.choice("ChargeType", ("PostPaid", "PrePaid"), code="InvalidChargeType.ValueNotSupported")
    name = p.str("EipName")
    want = p.tags()
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    pool = [e for e in (c.world.get(Eip, i, region) for i in ids) if e is not None] if ids else \
        list(c.world.all(Eip, region))
    cutoff = c.world.hidden_after(c.action)
    out = [e for e in pool
           if (cutoff is None or e.created <= cutoff)
           and (not ips or e.ip in ips) and (not status or e.status == status)
           and (not atype or e.instance_type == atype) and (not aid or e.instance_id == aid)
           and (not charge or e.charge_type == charge) and (not name or e.name == name)
           and (not want or tags.matches(e, want))]
    page, extra = page_numbers(by_seq(out), p, 100)
    return {"EipAddresses": {"EipAddress": [render_eip(c.world, e) for e in page]}, **extra}


@action(S, "AssociateEipAddress", client_token=True)
def associate_eip_address(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    eips.associate(c.world, region, p.req("AllocationId"), p.req("InstanceId"),
                   instance_type=p.str("InstanceType", default="EcsInstance") or "EcsInstance",
                   private_ip=p.str("PrivateIpAddress"), mode=p.str("Mode", default="NAT") or "NAT")
    return {}


@action(S, "UnassociateEipAddress", client_token=True)
def unassociate_eip_address(c: Call) -> dict[str, Any]:
    region = eip_region(c)
    p = c.params
    eips.unassociate(c.world, region, p.req("AllocationId"), p.str("InstanceId"), p.str("InstanceType"),
                     force=p.bool("Force"))
    return {}


@action(S, "ReleaseEipAddress")
def release_eip_address(c: Call) -> dict[str, Any]:
    region = eip_region(c)
    eips.release(c.world, region, c.params.req("AllocationId"))
    return {}


# --- NAT gateways ---------------------------------------------------------------------------------

@action(S, "CreateNatGateway", client_token=True)
def create_nat_gateway(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    t = p.tags()
    tags.validate(t)
    ngw = nat.create_nat_gateway(c.world, region, p.req("VpcId"), p.req("VSwitchId"),
                                 name=p.str("Name", default="") or "",
                                 description=p.str("Description", default="") or "",
                                 nat_type=p.str("NatType", default="Enhanced") or "Enhanced",
                                 network_type=p.str("NetworkType", default="internet") or "internet",
                                 internet_charge_type=p.str("InternetChargeType", default="PayByLcu") or "PayByLcu",
                                 eip_bind_mode=p.str("EipBindMode", default="MULTI_BINDED") or "MULTI_BINDED")
    ngw.tags = [[k, v] for k, v in t]
    return {"NatGatewayId": ngw.id, "SnatTableIds": {"SnatTableId": [ngw.snat_table_id]},
            "ForwardTableIds": {"ForwardTableId": [ngw.forward_table_id]}, "FullNatTableIds": {"FullNatTableId": []}}


def render_nat(world: World, ngw: NatGateway) -> dict[str, Any]:
    snat_ips = {ip for s in world.all(SnatEntry, ngw.region_id) if s.nat_gateway_id == ngw.id
                for ip in s.snat_ip.split(",")}
    return {"NatGatewayId": ngw.id, "Name": ngw.name, "Description": ngw.description, "VpcId": ngw.vpc_id,
            "RegionId": ngw.region_id, "Status": ngw.status, "BusinessStatus": "Normal", "NatType": ngw.nat_type,
            "NetworkType": ngw.network_type, "Spec": ngw.spec, "InternetChargeType": ngw.internet_charge_type,
            "InstanceChargeType": "PostPaid", "EipBindMode": ngw.eip_bind_mode, "AutoPay": False,
            "CreationTime": iso_second(ngw.created), "ExpiredTime": "", "DeletionProtection": False,
            "EcsMetricEnabled": False, "IcmpReplyEnabled": True, "PrivateLinkEnabled": False,
            "SecurityProtectionEnabled": False, "ResourceGroupId": "",
            "IpLists": {"IpList": [{"AllocationId": e.id, "IpAddress": e.ip, "PrivateIpAddress": ngw.private_ip,
                                    "UsingStatus": "UsedBySnatTable" if e.ip in snat_ips else "Idle",
                                    "SnatEntryEnabled": True} for e in eips.nat_eips(world, ngw.id)]},
            "SnatTableIds": {"SnatTableId": [ngw.snat_table_id]},
            "ForwardTableIds": {"ForwardTableId": [ngw.forward_table_id]}, "FullNatTableIds": {"FullNatTableId": []},
            "NatGatewayPrivateInfo": {"VswitchId": ngw.vswitch_id, "EniInstanceId": "", "PrivateIpAddress":
                                      ngw.private_ip, "IzNo": ngw.zone_id, "MaxBandwidth": 5120, "EniType": "indirect"},
            "Tags": {"Tag": [{"TagKey": k, "TagValue": v} for k, v in ngw.tags]}}


@action(S, "DescribeNatGateways")
def describe_nat_gateways(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    filters = {"id": p.str("NatGatewayId"), "vpc_id": p.str("VpcId"), "name": p.str("Name"),
               "status": p.str("Status"), "zone_id": p.str("ZoneId"), "nat_type": p.str("NatType"),
               "network_type": p.str("NetworkType")}
    want = p.tags()
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    out = [n for n in c.world.all(NatGateway, region)
           if not any(val and getattr(n, k) != val for k, val in filters.items())
           and (not want or tags.matches(n, want))]
    page, extra = page_numbers(by_seq(out), p, 50)
    return {"NatGateways": {"NatGateway": [render_nat(c.world, n) for n in page]}, **extra}


@action(S, "CreateSnatEntry", client_token=True)
def create_snat_entry(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    entry = nat.create_snat_entry(c.world, region, p.req("SnatTableId"), p.req("SnatIp"),
                                  source_vswitch_id=p.str("SourceVSwitchId", default="") or "",
                                  source_cidr=p.str("SourceCIDR", default="") or "",
                                  name=p.str("SnatEntryName", default="") or "",
                                  eip_affinity=p.int("EipAffinity", default=0, lo=0, hi=1) or 0)
    return {"SnatEntryId": entry.id}


@action(S, "DescribeSnatTableEntries")
def describe_snat_table_entries(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    table_id, ngw_id = p.str("SnatTableId"), p.str("NatGatewayId")
    if not table_id and not ngw_id:
        raise errors.missing("SnatTableId")
    if table_id:
        nat.nat_by_snat_table(c.world, region, table_id)
    if ngw_id:
        nat.get_nat(c.world, region, ngw_id)
    filters = {"snat_table_id": table_id, "nat_gateway_id": ngw_id, "id": p.str("SnatEntryId"),
               "name": p.str("SnatEntryName"), "source_cidr": p.str("SourceCIDR"),
               "source_vswitch_id": p.str("SourceVSwitchId")}
    snat_ip = p.str("SnatIp")
    out = [s for s in c.world.all(SnatEntry, region)
           if not any(val and getattr(s, k) != val for k, val in filters.items())
           and (not snat_ip or snat_ip in s.snat_ip.split(","))]
    page, extra = page_numbers(by_seq(out), p, 50)
    rows = [{"SnatEntryId": s.id, "SnatEntryName": s.name, "SnatTableId": s.snat_table_id,
             "NatGatewayId": s.nat_gateway_id, "SnatIp": s.snat_ip, "SourceCIDR": _snat_source_cidr(c.world, s),
             "SourceVSwitchId": s.source_vswitch_id, "Status": s.status, "EipAffinity": str(s.eip_affinity),
             "NetworkInterfaceId": ""} for s in page]
    return {"SnatTableEntries": {"SnatTableEntry": rows}, **extra}


def _snat_source_cidr(world: World, s: SnatEntry) -> str:
    if s.source_cidr:
        return s.source_cidr
    vsw = world.get(VSwitch, s.source_vswitch_id)
    return vsw.cidr if vsw else ""


@action(S, "DeleteSnatEntry", client_token=True)
def delete_snat_entry(c: Call) -> dict[str, Any]:
    region = c.region()
    nat.delete_snat_entry(c.world, region, c.params.req("SnatTableId"), c.params.req("SnatEntryId"))
    return {}


@action(S, "DescribeForwardTableEntries")
def describe_forward_table_entries(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    table_id, ngw_id = p.str("ForwardTableId"), p.str("NatGatewayId")
    if not table_id and not ngw_id:
        raise errors.missing("ForwardTableId")
    if table_id:
        nat.nat_by_forward_table(c.world, region, table_id)
    if ngw_id:
        nat.get_nat(c.world, region, ngw_id)
    _, extra = page_numbers([], p, 50)
    # The lab creates no DNAT entries (CreateForwardEntry is not emulated), so every table is empty.
    return {"ForwardTableEntries": {"ForwardTableEntry": []}, **extra}


# --- tags -----------------------------------------------------------------------------------------

@action(S, "TagResources")
def tag_resources(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    cls = tags.resolve_type(p.req("ResourceType"), S)
    ids = p.repeat("ResourceId")
    if not ids:
        raise errors.missing("ResourceId.1")
    if len(ids) > 20:
        raise errors.ApiError("NumberExceed.ResourceIds", "The maximum number of ResourceIds is exceeded. Valid : 20",
                              400)
    t = p.tags()
    if not t:
        raise errors.missing("Tag.1.Key")
    tags.tag(c.world, tags.resolve(c.world, region, cls, ids), t)
    return {}


@action(S, "ListTagResources")
def list_tag_resources(c: Call) -> dict[str, Any]:
    region = c.region()
    return list_tags(c, region, S, id_limit=20, page=50)
