"""ECS 2014-05-26 actions."""

from __future__ import annotations

import base64
import fnmatch
from typing import Any

from .. import errors
from ..clock import iso_minute, iso_second
from ..resources import assistant, enis, instances, security_groups, tags
from ..resources.eips import Eip
from ..resources.enis import Eni
from ..resources.instances import Instance
from ..resources.security_groups import SecurityGroup
from ..world import World
from . import (
    Call,
    action,
    all_of,
    by_seq,
    cached_render,
    ecs_paged,
    ecs_tags,
    equals,
    next_tokens,
    page_numbers,
    paged_query,
    raw,
)

S = "ecs"

# --- regions, zones, catalogue ----------------------------------------------------------------


_RESOURCE_TYPES = ("instance", "disk", "reservedinstance", "scu", "dedicatedhost", "ddh", "image", "snapshot")
_LOCK_REASONS = ("financial", "security", "recycling", "dedicatedhostfinancial", "refunded")
_FILTER_KEYS = ("CreationStartTime", "CreationEndTime", "ExpiredStartTime", "ExpiredEndTime")


@action(S, "DescribeRegions")
def describe_regions(c: Call) -> dict[str, Any]:
    lang = c.params.choice("AcceptLanguage", ("zh-CN", "en-US", "ja"), default="zh-CN",
                           code="InvalidAcceptLanguage.NotFound", status=404)
    c.params.choice("InstanceChargeType", ("PrePaid", "PostPaid"), code="InvalidInstanceChargeType.NotFound",
                    status=404)
    c.params.choice("ResourceType", _RESOURCE_TYPES, code="InvalidResourceType.NotFound", status=404)
    regions = [{"RegionId": r.region_id, "LocalName": r.local_name if lang == "zh-CN" else r.local_name_en,
                "RegionEndpoint": r.ecs_endpoint, "Status": "available"}
               for r in c.world.catalogue.regions.values()]
    return {"Regions": {"Region": regions}}


@action(S, "DescribeZones")
def describe_zones(c: Call) -> dict[str, Any]:
    region = c.world.catalogue.regions[c.region()]
    c.params.choice("InstanceChargeType", ("PrePaid", "PostPaid"), code="InvalidInstanceChargeType.NotFound",
                    status=404)
    c.params.choice("SpotStrategy", ("NoSpot", "SpotWithPriceLimit", "SpotAsPriceGo"), code="InvalidSpotStrategy")
    c.params.choice("AcceptLanguage", ("zh-CN", "en-US", "ja"), code="InvalidAcceptLanguage.NotFound", status=404)
    verbose = c.params.bool("Verbose", default=True)
    types = sorted(c.world.catalogue.instance_types)
    zones = []
    for z in region.zones:
        zone: dict[str, Any] = {"ZoneId": z.zone_id, "LocalName": z.local_name, "ZoneType": "AvailabilityZone"}
        if verbose:
            zone.update({
                "AvailableInstanceTypes": {"InstanceTypes": types},
                "AvailableResourceCreation": {"ResourceTypes": ["VSwitch", "IoOptimized", "Instance", "Disk"]},
                "AvailableDiskCategories": {"DiskCategories": ["cloud_essd", "cloud_efficiency", "cloud_auto"]},
                "AvailableVolumeCategories": {"VolumeCategories": []},
                "AvailableDedicatedHostTypes": {"DedicatedHostType": []},
            })
        zones.append(zone)
    return {"Zones": {"Zone": zones}}


@action(S, "DescribeInstanceTypes")
def describe_instance_types(c: Call) -> dict[str, Any]:
    p = c.params
    wanted = p.repeat("InstanceTypes", limit=10)
    family = p.str("InstanceTypeFamily")
    families = p.repeat("InstanceTypeFamilies", limit=10)
    min_eni = p.int("MinimumEniQuantity", lo=0)
    rows = []
    for idx, t in enumerate(c.world.catalogue.instance_types.values(), start=1):
        if wanted and t.instance_type_id not in wanted:
            continue
        if family and t.family != family:
            continue
        if families and t.family not in families:
            continue
        if min_eni is not None and t.eni_quantity < min_eni:
            continue
        rows.append((idx, t))
    page, extra = next_tokens(rows, p, 1, 100, 100, clamp=True, key=lambda r: r[0])
    out = [{"InstanceTypeId": t.instance_type_id, "InstanceTypeFamily": t.family, "CpuCoreCount": t.cpu,
            "MemorySize": t.memory_gib, "InstanceFamilyLevel": t.family_level, "EniQuantity": t.eni_quantity,
            "EniPrivateIpAddressQuantity": t.eni_private_ip_quantity,
            "EniIpv6AddressQuantity": t.eni_ipv6_quantity, "EniTotalQuantity": t.eni_quantity,
            "EniTrunkSupported": t.family_level == "EnterpriseLevel", "CpuArchitecture": "X86",
            "PrimaryEniQueueNumber": min(t.cpu, 8), "SecondaryEniQueueNumber": min(t.cpu, 8),
            "MaximumQueueNumberPerEni": min(t.cpu, 8), "NetworkCardQuantity": 1, "GPUAmount": 0, "GPUSpec": "",
            "LocalStorageAmount": 0}
           for _, t in page]
    return {"InstanceTypes": {"InstanceType": out}, "NextToken": extra["NextToken"]}


@action(S, "DescribeImages")
def describe_images(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    ids = p.comma_list("ImageId", limit=100)
    os_type = p.choice("OSType", ("linux", "windows"))
    name = p.str("ImageName")
    images = [i for i in c.world.catalogue.images.values()
              if (not ids or i.image_id in ids) and (not os_type or i.os_type == os_type)
              and (not name or fnmatch.fnmatchcase(i.image_name, name.replace("*", "*")))]
    page, extra = page_numbers(images, p, 100)
    out = [{"ImageId": i.image_id, "ImageName": i.image_name, "OSType": i.os_type, "OSName": i.os_name,
            "OSNameEn": i.os_name_en, "Platform": i.platform, "Architecture": i.architecture, "Size": i.size,
            "Status": "Available", "ImageOwnerAlias": "system", "IsPublic": True, "Usage": "instance",
            "IsSupportCloudinit": True, "IsSupportIoOptimized": True, "BootMode": "BIOS",
            "CreationTime": "2024-01-01T00:00:00Z", "Description": "", "ProductCode": "", "ImageVersion": "",
            "Progress": "100%", "Tags": {"Tag": []}}
           for i in page]
    return {"Images": {"Image": out}, "RegionId": region, **extra}


# --- instances ------------------------------------------------------------------------------

def render_eip_on_instance(world: World, inst: Instance) -> dict[str, Any]:
    eip = world.get(Eip, inst.eip_id) if inst.eip_id else None
    if eip is None:
        return {"AllocationId": "", "IpAddress": "", "InternetChargeType": ""}
    return {"AllocationId": eip.id, "IpAddress": eip.ip, "Bandwidth": int(eip.bandwidth),
            "InternetChargeType": eip.internet_charge_type, "IsSupportUnassociate": True}


def render_instance(world: World, inst: Instance) -> dict[str, Any]:
    cat = world.catalogue
    image = cat.images.get(inst.image_id)
    itype = cat.instance_types.get(inst.instance_type)
    nics = []
    for eni_id in inst.eni_ids:
        eni = world.get(Eni, eni_id)
        if eni is None or (eni.eni_type != "Primary" and eni.status not in ("InUse", "Detaching")):
            continue
        nics.append({"NetworkInterfaceId": eni.id, "MacAddress": eni.mac, "PrimaryIpAddress": eni.primary_ip,
                     "Type": eni.eni_type,
                     "PrivateIpSets": {"PrivateIpSet": [{"PrivateIpAddress": eni.primary_ip, "Primary": True}]}})
    return {
        "InstanceId": inst.id, "InstanceName": inst.name, "HostName": inst.hostname, "Description": inst.description,
        "RegionId": inst.region_id, "ZoneId": inst.zone_id, "Status": inst.status,
        "InstanceType": inst.instance_type, "InstanceTypeFamily": itype.family if itype else "",
        "Cpu": itype.cpu if itype else 0, "Memory": int(itype.memory_gib * 1024) if itype else 0,
        "ImageId": inst.image_id, "OSType": image.os_type if image else "", "OSName": image.os_name if image else "",
        "OSNameEn": image.os_name_en if image else "", "InstanceNetworkType": "vpc", "IoOptimized": True,
        "InstanceChargeType": inst.charge_type, "InternetChargeType": inst.internet_charge_type,
        "InternetMaxBandwidthOut": inst.bw_out, "InternetMaxBandwidthIn": inst.bw_in,
        "CreationTime": iso_minute(inst.created), "StartTime": iso_minute(inst.started) if inst.started else "",
        "ExpiredTime": iso_minute(inst.expired_time) if inst.expired_time else "2099-12-31T15:59Z",
        "StoppedMode": inst.stopped_mode or "Not-applicable", "SpotStrategy": "NoSpot", "DeletionProtection": False,
        "KeyPairName": inst.key_pair_name, "SerialNumber": inst.id[2:], "ResourceGroupId": "", "Recyclable": False,
        "VpcAttributes": {"VpcId": inst.vpc_id, "VSwitchId": inst.vswitch_id, "NatIpAddress": "",
                          "PrivateIpAddress": {"IpAddress": [inst.private_ip]}},
        "PublicIpAddress": {"IpAddress": [inst.public_ip] if inst.public_ip else []},
        "InnerIpAddress": {"IpAddress": []},
        "EipAddress": render_eip_on_instance(world, inst),
        "SecurityGroupIds": {"SecurityGroupId": list(inst.security_group_ids)},
        "NetworkInterfaces": {"NetworkInterface": nics},
        "OperationLocks": {"LockReason": []},
        "MetadataOptions": {"HttpEndpoint": "enabled", "HttpTokens": "optional"},
        "Tags": ecs_tags(inst),
    }


_INSTANCE_STATUSES = ("Pending", "Running", "Starting", "Stopping", "Stopped")


@action(S, "DescribeInstances")
def describe_instances(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    ids = p.json_list("InstanceIds", limit=100)
    status = p.str("Status")
    if status and status not in _INSTANCE_STATUSES:
        raise errors.ApiError("InvalidStatus.NotFound", "The specified Status is not found", 404)
    charge = p.str("InstanceChargeType")
    if charge and charge not in ("PrePaid", "PostPaid"):
        raise errors.ApiError("InvalidInstanceChargeType.NotFound", "The specified InstanceChargeType is not found.",
                              404)
    net_type = p.str("InstanceNetworkType")
    if net_type and net_type not in ("vpc", "classic"):
        raise errors.ApiError("InvalidNetworkType.NotFound", "The specified InstanceNetworkType is not found.", 404)
    p.choice("InternetChargeType", ("PayByTraffic", "PayByBandwidth"),
             code="InvalidInternetChargeType.ValueNotSupported", status=404)
    p.choice("LockReason", _LOCK_REASONS, code="InvalidLockReason.NotFound", status=404)
    for f in p.structs("Filter"):
        if f.get("Key") not in _FILTER_KEYS:
            raise errors.ApiError("InvalidFilterKey.NotFound", f"The specified filter key {f.get('Key')!r} is not "
                                  "found.", 404)
    sg = p.str("SecurityGroupId")
    name = p.str("InstanceName")
    private_ips = p.json_list("PrivateIpAddresses", limit=100)
    public_ips = p.json_list("PublicIpAddresses", limit=100)
    eip_ips = p.json_list("EipAddresses", limit=100)
    want_tags = p.tags(code="InvalidTagCount")
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    world = c.world

    def eip_matches(inst: Instance) -> bool:
        eip = world.get(Eip, inst.eip_id)
        return eip is not None and eip.ip in (eip_ips or ())

    match = all_of(
        equals(vpc_id=p.str("VpcId"), vswitch_id=p.str("VSwitchId"), zone_id=p.str("ZoneId"),
               instance_type=p.str("InstanceType"), image_id=p.str("ImageId"),
               internet_charge_type=p.str("InternetChargeType"), status=status, charge_type=charge),
        (lambda i: False) if net_type == "classic" else None,
        (lambda i: sg in i.security_group_ids) if sg else None,
        (lambda i: fnmatch.fnmatchcase(i.name, name)) if name else None,
        (lambda i: i.private_ip in private_ips) if private_ips is not None else None,
        (lambda i: i.public_ip in public_ips) if public_ips is not None else None,
        eip_matches if eip_ips is not None else None,
        (lambda i: tags.matches(i, want_tags)) if want_tags else None,
    )
    page, extra = paged_query(world, Instance, region, match, p, ids=ids, token=(10, 100, 10), page_max=100,
                              action_name=c.action)
    return {"Instances": {"Instance": raw(instance_json(world, i) for i in page)}, **extra}


def instance_json(world: World, inst: Instance) -> bytes:
    enis = world.tables[Eni.KIND]
    eip = world.get(Eip, inst.eip_id) if inst.eip_id else None
    deps = (tuple(enis[e].rev for e in inst.eni_ids if e in enis), eip.rev if eip else 0)
    return cached_render(world, inst, deps, lambda: render_instance(world, inst))


def _find_instance_any_region(c: Call, instance_id: str | None) -> Instance:
    if not instance_id:
        raise errors.missing("InstanceId")
    inst = c.world.get(Instance, instance_id)
    if inst is None:
        raise errors.ApiError("InvalidInstanceId.NotFound", f"The specified InstanceId does not exist. "
                              f"({instance_id})", 404)
    return inst


@action(S, "RunInstances", client_token=True)
def run_instances(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    sg_ids = p.repeat("SecurityGroupIds", limit=5)
    sg_one = p.str("SecurityGroupId")
    if sg_one and sg_ids:
        raise errors.ApiError("InvalidParameter.Conflict", "SecurityGroupId and SecurityGroupIds cannot both be "
                              "set.", 400)
    if p.str("VSwitchId") is None:
        raise errors.missing("VSwitchId")
    kwargs: dict[str, Any] = {
        "image_id": p.req("ImageId"), "instance_type": p.req("InstanceType"), "vswitch_id": p.req("VSwitchId"),
        "security_group_ids": sg_ids or ([sg_one] if sg_one else []),
        "amount": p.int("Amount", default=1, lo=1, hi=100), "name": p.str("InstanceName", default="") or "",
        "hostname": p.str("HostName", default="") or "", "description": p.str("Description", default="") or "",
        "bw_out": p.int("InternetMaxBandwidthOut", default=0, lo=0, hi=200),
        "bw_in": p.int("InternetMaxBandwidthIn", default=0, lo=0, hi=10240),
        "internet_charge_type": p.choice("InternetChargeType", ("PayByTraffic", "PayByBandwidth"),
                                         default="PayByTraffic"),
        "charge_type": p.choice("InstanceChargeType", ("PrePaid", "PostPaid"), default="PostPaid"),
        "period_months": p.int("Period", default=1, lo=1, hi=60),
        "private_ip": p.str("PrivateIpAddress"), "zone_id": p.str("ZoneId"), "tags": p.tags(),
        "unique_suffix": p.bool("UniqueSuffix"),
    }
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    made = instances.run_instances(c.world, region, **kwargs)
    return {"InstanceIdSets": {"InstanceIdSet": [i.id for i in made]}, "OrderId": "", "TradePrice": 0.0}


@action(S, "StartInstance")
def start_instance(c: Call) -> dict[str, Any]:
    inst = _find_instance_any_region(c, c.params.str("InstanceId"))
    if c.params.bool("DryRun"):
        raise errors.dry_run_ok()
    instances.start_instance(c.world, inst)
    return {}


@action(S, "StopInstance")
def stop_instance(c: Call) -> dict[str, Any]:
    inst = _find_instance_any_region(c, c.params.str("InstanceId"))
    mode = c.params.choice("StoppedMode", ("StopCharging", "KeepCharging"), default="KeepCharging")
    if c.params.bool("DryRun"):
        raise errors.dry_run_ok()
    instances.stop_instance(c.world, inst, mode or "KeepCharging")
    return {}


@action(S, "RebootInstance")
def reboot_instance(c: Call) -> dict[str, Any]:
    inst = _find_instance_any_region(c, c.params.str("InstanceId"))
    if c.params.bool("DryRun"):
        raise errors.dry_run_ok()
    instances.reboot_instance(c.world, inst)
    return {}


@action(S, "DeleteInstance")
def delete_instance(c: Call) -> dict[str, Any]:
    inst = _find_instance_any_region(c, c.params.str("InstanceId"))
    force = c.params.bool("Force")
    if c.params.bool("DryRun"):
        raise errors.dry_run_ok()
    instances.delete_instance(c.world, inst, force=force)
    return {}


@action(S, "ModifyInstanceChargeType", client_token=True)
def modify_instance_charge_type(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    ids = p.json_list("InstanceIds")
    if not ids:
        raise errors.missing("InstanceIds")
    if len(ids) > 20:
        raise errors.ApiError("InstancesIdQuotaExceed", "At most 20 instances can be changed at a time.", 400)
    target = p.choice("InstanceChargeType", ("PrePaid", "PostPaid"), default="PrePaid",
                      code="InvalidInstanceChargeType.ValueNotSupported")
    insts = [instances.get_instance(c.world, region, i) for i in ids]
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    instances.modify_charge_type(c.world, insts, target or "PrePaid")
    return {"OrderId": "", "FeeOfInstances": {"FeeOfInstance": [
        {"InstanceId": i.id, "Fee": "0", "Currency": "CNY"} for i in insts]}}


@action(S, "ConvertNatPublicIpToEip")
def convert_nat_public_ip_to_eip(c: Call) -> dict[str, Any]:
    region = c.region()
    inst = instances.get_instance(c.world, region, c.params.req("InstanceId"))
    instances.convert_public_ip(c.world, inst, rule=getattr(c.world, "convert_rule", "current"))
    return {}


# --- security groups ----------------------------------------------------------------------------

@action(S, "CreateSecurityGroup", client_token=True)
def create_security_group(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    t = p.tags()
    tags.validate(t)
    sg = security_groups.create_security_group(
        c.world, region, p.str("VpcId"), name=p.str("SecurityGroupName", default="") or "",
        description=p.str("Description", default="") or "",
        group_type=p.str("SecurityGroupType", default="normal") or "normal")
    sg.tags = [[k, v] for k, v in t]
    return {"SecurityGroupId": sg.id}


def render_sg(sg: SecurityGroup) -> dict[str, Any]:
    return {"SecurityGroupId": sg.id, "SecurityGroupName": sg.name, "SecurityGroupType": sg.group_type,
            "VpcId": sg.vpc_id, "Description": sg.description, "CreationTime": iso_second(sg.created),
            "RuleCount": len(sg.permissions), "GroupToGroupRuleCount": 0, "ResourceGroupId": "",
            "ServiceManaged": False, "Tags": ecs_tags(sg)}


@action(S, "DescribeSecurityGroups")
def describe_security_groups(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    ids = p.json_list("SecurityGroupIds", limit=100)
    one = p.str("SecurityGroupId")
    vpc_id = p.str("VpcId")
    name = p.str("SecurityGroupName")
    want_tags = p.tags()
    if p.bool("DryRun"):
        raise errors.dry_run_ok()
    out = [sg for sg in c.world.all(SecurityGroup, region)
           if (ids is None or sg.id in ids) and (not one or sg.id == one) and (not vpc_id or sg.vpc_id == vpc_id)
           and (not name or sg.name == name) and (not want_tags or tags.matches(sg, want_tags))]
    page, extra = ecs_paged(by_seq(out), p, token_lo=1, token_hi=100, token_default=10, page_max=50)
    return {"SecurityGroups": {"SecurityGroup": [render_sg(s) for s in page]}, "RegionId": region, **extra}


@action(S, "AuthorizeSecurityGroup", client_token=True)
def authorize_security_group(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    sg = security_groups.get_sg(c.world, region, p.req("SecurityGroupId"))
    perms: list[dict[str, Any]] = p.structs("Permissions", limit=100)
    if not perms:
        if p.str("IpProtocol") is None:
            raise errors.missing("Permissions.1.IpProtocol")
        perms = [{k: p.str(k) for k in ("IpProtocol", "PortRange", "SourceCidrIp", "Policy", "Priority",
                                         "Description", "SourceGroupId", "NicType", "DestCidrIp")
                  if p.str(k) is not None}]
    for perm in perms:
        for need in ("IpProtocol", "PortRange"):
            if not perm.get(need):
                raise errors.missing(f"Permissions.N.{need}")
    security_groups.authorize(c.world, sg, perms, "ingress")
    return {}


@action(S, "DescribeSecurityGroupAttribute")
def describe_security_group_attribute(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    sg = security_groups.get_sg(c.world, region, p.req("SecurityGroupId"))
    direction = p.choice("Direction", ("ingress", "egress", "all"), default="all")
    perms = [{**{k: v for k, v in r.items() if k != "CreateTime"}, "CreateTime": iso_second(r["CreateTime"]),
              "SecurityGroupRuleId": f"sgr-{sg.id[3:]}{i:04d}"[:24]}
             for i, r in enumerate(sg.permissions) if direction == "all" or r["Direction"] == direction]
    return {"SecurityGroupId": sg.id, "SecurityGroupName": sg.name, "Description": sg.description,
            "VpcId": sg.vpc_id, "RegionId": region, "InnerAccessPolicy": "Accept",
            "Permissions": {"Permission": perms}}


# --- network interfaces ---------------------------------------------------------------------------

def render_eni(world: World, eni: Eni, full: bool = True) -> dict[str, Any]:
    eip = world.get(Eip, eni.eip_id) if eni.eip_id else None
    # a NAT-mode EIP shows on the ENI once associated (Associating included: the binding exists)
    assoc = {"PublicIpAddress": eip.ip, "AllocationId": eip.id} if eip else {}
    body: dict[str, Any] = {
        "NetworkInterfaceId": eni.id, "NetworkInterfaceName": eni.name, "Description": eni.description,
        "Status": eni.status, "Type": eni.eni_type, "VpcId": eni.vpc_id, "VSwitchId": eni.vswitch_id,
        "ZoneId": eni.zone_id, "MacAddress": eni.mac, "PrivateIpAddress": eni.primary_ip,
        "PrivateIpSets": {"PrivateIpSet": [{"PrivateIpAddress": eni.primary_ip, "Primary": True,
                                            **({"AssociatedPublicIp": dict(assoc)} if full else {})}]},
        "SecurityGroupIds": {"SecurityGroupId": list(eni.security_group_ids)},
        "ResourceGroupId": "", "ServiceManaged": False, "Tags": ecs_tags(eni),
        "Ipv6Sets": {"Ipv6Set": []}, "Ipv4PrefixSets": {"Ipv4PrefixSet": []},
        "Ipv6PrefixSets": {"Ipv6PrefixSet": []},
    }
    if full:
        body.update({
            "InstanceId": eni.instance_id, "AssociatedPublicIp": dict(assoc),
            "CreationTime": iso_second(eni.created), "DeleteOnRelease": eni.delete_on_release,
            "QueueNumber": 1, "SourceDestCheck": False,
            "Attachment": ({"InstanceId": eni.instance_id, "DeviceIndex": eni.device_index, "NetworkCardIndex": 0}
                           if eni.instance_id else {}),
        })
    return body


@action(S, "CreateNetworkInterface", client_token=True)
def create_network_interface(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    sg_ids = p.repeat("SecurityGroupIds")
    sg_one = p.str("SecurityGroupId")
    if sg_one and sg_ids:
        raise errors.ApiError("InvalidParameter.Conflict", "SecurityGroupId and SecurityGroupIds cannot both be "
                              "set.", 400)
    name = p.str("NetworkInterfaceName", default="") or ""
    if name and not 2 <= len(name) <= 128:
        raise errors.invalid("NetworkInterfaceName", "It must be 2 to 128 characters long.")
    desc = p.str("Description", default="") or ""
    if desc and (not 2 <= len(desc) <= 256 or desc.startswith(("http://", "https://"))):
        raise errors.invalid("Description", "It must be 2 to 256 characters and not start with http(s)://.")
    if p.str("InstanceType") not in (None, "", "Secondary"):
        raise errors.ApiError("InvalidParameter", "The lab creates Secondary ENIs only.", 400)
    t = p.tags()
    tags.validate(t)
    eni = enis.create_network_interface(
        c.world, region, vswitch_id=p.req("VSwitchId"), security_group_ids=sg_ids or ([sg_one] if sg_one else []),
        primary_ip=p.str("PrimaryIpAddress"), name=name, description=desc, tags=t,
        delete_on_release=p.bool("DeleteOnRelease"))
    return render_eni(c.world, eni, full=False)


@action(S, "DescribeNetworkInterfaces")
def describe_network_interfaces(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    ids = p.repeat("NetworkInterfaceId", limit=100)
    private_ips = p.repeat("PrivateIpAddress", limit=100)
    eni_type = p.choice("Type", ("Primary", "Secondary"))
    status = p.choice("Status", ("Available", "Attaching", "InUse", "Detaching", "Deleting"))
    sg = p.str("SecurityGroupId")
    want_tags = p.tags()
    match = all_of(
        equals(instance_id=p.str("InstanceId"), vpc_id=p.str("VpcId"), vswitch_id=p.str("VSwitchId"),
               primary_ip=p.str("PrimaryIpAddress"), name=p.str("NetworkInterfaceName"), eni_type=eni_type,
               status=status),
        (lambda e: e.eni_type == "Secondary" and sg in e.security_group_ids) if sg else None,
        (lambda e: e.primary_ip in private_ips) if private_ips else None,
        (lambda e: tags.matches(e, want_tags)) if want_tags else None,
    )
    world = c.world
    page, extra = paged_query(world, Eni, region, match, p, ids=ids or None, token=(10, 500, 10), page_max=1000,
                              action_name=c.action)
    return {"NetworkInterfaceSets": {"NetworkInterfaceSet": raw(eni_json(world, e) for e in page)}, **extra}


def eni_json(world: World, eni: Eni) -> bytes:
    eip = world.get(Eip, eni.eip_id) if eni.eip_id else None
    return cached_render(world, eni, (eip.rev if eip else 0,), lambda: render_eni(world, eni))


@action(S, "AttachNetworkInterface")
def attach_network_interface(c: Call) -> dict[str, Any]:
    region = c.region()
    enis.attach(c.world, region, c.params.req("InstanceId"), c.params.req("NetworkInterfaceId"))
    return {}


@action(S, "DetachNetworkInterface")
def detach_network_interface(c: Call) -> dict[str, Any]:
    region = c.region()
    enis.detach(c.world, region, c.params.req("InstanceId"), c.params.req("NetworkInterfaceId"))
    return {}


@action(S, "DeleteNetworkInterface")
def delete_network_interface(c: Call) -> dict[str, Any]:
    region = c.region()
    enis.delete(c.world, region, c.params.req("NetworkInterfaceId"))
    return {}


# --- Cloud Assistant ----------------------------------------------------------------------------

@action(S, "RunCommand", client_token=True)
def run_command(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    if p.repeat("ResourceTag"):
        raise errors.ApiError("InvalidParameter", "The lab selects instances by InstanceId.N only.", 400)
    inv = assistant.run_command(
        c.world, region, instance_ids=p.repeat("InstanceId"), command_type=p.req("Type"),
        content=p.req("CommandContent"), content_encoding=p.str("ContentEncoding", default="PlainText") or "PlainText",
        timeout=p.int("Timeout", default=60) or 60, working_dir=p.str("WorkingDir", default="") or "",
        username=p.str("Username", default="") or "", name=p.str("Name", default="") or "",
        description=p.str("Description", default="") or "", repeat_mode=p.str("RepeatMode", default="Once") or "Once",
        parameters=p.str("Parameters", default="") or "")
    return {"CommandId": inv.command_id, "InvokeId": inv.id}


def _encode_output(text: str, encoding: str) -> str:
    return base64.b64encode(text.encode()).decode() if encoding.lower() == "base64" else text


def _invocations(c: Call) -> tuple[str, list[assistant.Invocation], str]:
    region = c.region()
    p = c.params
    for name, lo, hi in (("PageSize", 1, 50), ("PageNumber", 1, 10**9), ("MaxResults", 1, 10**9)):
        raw = p.str(name)
        if raw not in (None, "") and (not raw.lstrip("-").isdigit() or not lo <= int(raw) <= hi):
            code = "InvalidParam.PageNumber" if name == "PageNumber" else "InvalidParam.PageSize"
            raise errors.ApiError(code, f"The specified {name} is not valid.", 403)
    invoke_id, command_id, instance_id = p.str("InvokeId"), p.str("CommandId"), p.str("InstanceId")
    command_name = p.str("CommandName")
    encoding = p.choice("ContentEncoding", ("PlainText", "Base64"), default="Base64") or "Base64"
    out = [inv for inv in c.world.all(assistant.Invocation, region)
           if (not invoke_id or inv.id == invoke_id) and (not command_id or inv.command_id == command_id)
           and (not command_name or inv.name == command_name)
           and (not instance_id or any(r["InstanceId"] == instance_id for r in inv.results))]
    return region, by_seq(out), encoding


@action(S, "DescribeInvocations")
def describe_invocations(c: Call) -> dict[str, Any]:
    _, invs, encoding = _invocations(c)
    p = c.params
    status = p.str("InvokeStatus")
    include_output = p.bool("IncludeOutput")
    instance_id = p.str("InstanceId")
    if status:
        invs = [i for i in invs if assistant.overall_status(i) == status]
    page, extra = ecs_paged(invs, p, token_lo=1, token_hi=50, token_default=10, page_max=50)
    rows = []
    for inv in page:
        st = assistant.overall_status(inv)
        insts = []
        for r in inv.results:
            if instance_id and r["InstanceId"] != instance_id:
                continue
            insts.append({
                "InstanceId": r["InstanceId"], "InvocationStatus": r["InvocationStatus"],
                "InstanceInvokeStatus": _legacy_status(r["InvocationStatus"]),
                "Output": _encode_output(r["Output"], encoding) if include_output else "",
                "ExitCode": r["ExitCode"], "ErrorCode": r["ErrorCode"], "ErrorInfo": r["ErrorInfo"],
                "Dropped": r["Dropped"], "Repeats": r["Repeats"], "StartTime": r["StartTime"],
                "FinishTime": r["FinishedTime"], "StopTime": "", "UpdateTime": r["UpdateTime"],
                "CreationTime": r["CreationTime"], "Timed": False})
        rows.append({
            "InvokeId": inv.id, "CommandId": inv.command_id, "CommandName": inv.name, "CommandType": inv.command_type,
            "CommandContent": _encode_output(inv.content, encoding), "CommandDescription": inv.description,
            "InvocationStatus": st, "InvokeStatus": _legacy_overall(st), "RepeatMode": inv.repeat_mode,
            "Timeout": inv.timeout, "Username": inv.username, "WorkingDir": inv.working_dir,
            "CreationTime": iso_second(inv.created), "Frequency": "", "Parameters": inv.parameters, "Timed": False,
            "InvokeInstances": {"InvokeInstance": insts}, "Tags": ecs_tags(inv)})
    return {"Invocations": {"Invocation": rows}, **extra}


def _legacy_status(s: str) -> str:
    return {"Pending": "Running", "Running": "Running", "Success": "Finished", "Failed": "Failed",
            "Timeout": "Failed", "Invalid": "Failed", "Error": "Failed", "Aborted": "Failed"}.get(s, "Stopped")


def _legacy_overall(s: str) -> str:
    return {"Pending": "Running", "Running": "Running", "Success": "Finished", "Failed": "Failed",
            "PartialFailed": "PartialFinished"}.get(s, "Stopped")


@action(S, "DescribeInvocationResults")
def describe_invocation_results(c: Call) -> dict[str, Any]:
    _, invs, encoding = _invocations(c)
    p = c.params
    instance_id = p.str("InstanceId")
    record_status = p.str("InvokeRecordStatus")
    rows = []
    seq = 0
    for inv in invs:
        for r in inv.results:
            seq += 1
            if instance_id and r["InstanceId"] != instance_id:
                continue
            rec_status = "Running" if r["InvocationStatus"] in ("Pending", "Running") else "Finished"
            if record_status and rec_status != record_status:
                continue
            rows.append((inv.seq * 1000 + seq, {
                "CommandId": inv.command_id, "InvokeId": inv.id, "InstanceId": r["InstanceId"],
                "InvocationStatus": r["InvocationStatus"], "InvokeRecordStatus": rec_status,
                "Output": _encode_output(r["Output"], encoding), "ExitCode": r["ExitCode"],
                "ErrorCode": r["ErrorCode"], "ErrorInfo": r["ErrorInfo"], "Dropped": r["Dropped"],
                "Repeats": r["Repeats"], "StartTime": r["StartTime"], "FinishedTime": r["FinishedTime"],
                "StopTime": "", "Username": inv.username, "Tags": ecs_tags(inv)}))
    if p.str("NextToken") or p.str("MaxResults"):
        page, extra = next_tokens(rows, p, 1, 50, 10, clamp=True, key=lambda r: r[0])
        extra.update({"TotalCount": len(rows), "PageSize": len(page), "PageNumber": 1})
    else:
        page, extra = page_numbers(rows, p, 50)
        extra["NextToken"] = ""
    return {"Invocation": {"InvocationResults": {"InvocationResult": [r for _, r in page]}, **extra}}


@action(S, "DescribeCloudAssistantStatus")
def describe_cloud_assistant_status(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    ids = p.repeat("InstanceId")
    if len(ids) > 50:
        raise errors.ApiError("InstanceIds.ExceedLimit", "At most 50 instance ids can be queried at a time.", 403)
    os_type = p.str("OSType")
    if ids:
        pool = []
        for iid in ids:
            inst = c.world.get(Instance, iid, region)
            if inst is None:
                raise errors.ApiError("InvalidInstance.NotFound", f"The specified instance does not exist. ({iid})",
                                      404)
            pool.append(inst)
    else:
        pool = by_seq(c.world.all(Instance, region))
    rows = []  # (instance seq, row): paging by creation order, stable under deletions
    now = c.world.clock.now()
    for inst in pool:
        image = c.world.catalogue.images.get(inst.image_id)
        ostype = "Windows" if image and image.os_type == "windows" else "Linux"
        if os_type and os_type.lower() != ostype.lower():
            continue
        online = inst.cloud_assistant and inst.status == "Running"
        n_invocations = sum(1 for inv in c.world.all(assistant.Invocation, region)
                            for r in inv.results if r["InstanceId"] == inst.id)
        rows.append((inst.seq, {
            "InstanceId": inst.id, "CloudAssistantStatus": "true" if online else "false",
            "CloudAssistantVersion": "2.2.3.857" if inst.cloud_assistant else "",
            "LastHeartbeatTime": iso_second(now - 30) if online else "", "ActiveTaskCount": 0,
            "InvocationCount": n_invocations, "LastInvokedTime": "", "OSType": ostype,
            "SupportSessionManager": inst.cloud_assistant}))
    if ids:
        return {"InstanceCloudAssistantStatusSet": {"InstanceCloudAssistantStatus": [r for _, r in rows]},
                "TotalCount": len(rows), "PageNumber": 1, "PageSize": len(rows), "NextToken": ""}
    page, extra = next_tokens(rows, p, 1, 50, 10, clamp=True, key=lambda r: r[0])
    return {"InstanceCloudAssistantStatusSet": {"InstanceCloudAssistantStatus": [r for _, r in page]},
            "TotalCount": len(rows), "PageSize": len(page), "PageNumber": 1, **extra}


# --- tags -----------------------------------------------------------------------------------------

@action(S, "TagResources")
def tag_resources(c: Call) -> dict[str, Any]:
    p = c.params
    for need in ("RegionId", "ResourceType"):
        if not p.str(need):
            raise errors.ApiError(f"MissingParameter.{need}", f"The parameter {need} is required.", 404)
    region = c.region()
    cls = tags.resolve_type(p.req("ResourceType"), S)
    ids = p.repeat("ResourceId")
    if not ids:
        raise errors.missing("ResourceId.1")
    if len(ids) > 50:
        raise errors.ApiError("NumberExceed.ResourceIds", "The maximum number of ResourceIds is exceeded. Valid : 50",
                              400)
    t = p.tags(code="NumberExceed.Tags")
    if not t:
        raise errors.ApiError("MissingParameter.Tags", "The parameter Tag.N is required.", 404)
    tags.tag(c.world, tags.resolve(c.world, region, cls, ids), t)
    return {}


@action(S, "UntagResources")
def untag_resources(c: Call) -> dict[str, Any]:
    region = c.region()
    p = c.params
    cls = tags.resolve_type(p.req("ResourceType"), S)
    ids = p.repeat("ResourceId", limit=50)
    if not ids:
        raise errors.missing("ResourceId.1")
    keys = p.repeat("TagKey", limit=20)
    if not keys and not p.bool("All"):
        raise errors.missing("TagKey.1")
    tags.untag(c.world, tags.resolve(c.world, region, cls, ids), None if p.bool("All") and not keys else keys)
    return {}


@action(S, "ListTagResources")
def list_tag_resources(c: Call) -> dict[str, Any]:
    region = c.region()
    return list_tags(c, region, S, id_limit=50, page=50)


def list_tags(c: Call, region: str, service: str, id_limit: int, page: int) -> dict[str, Any]:
    p = c.params
    rtype = p.req("ResourceType")
    cls = tags.resolve_type(rtype, service)
    ids = p.repeat("ResourceId", limit=id_limit)
    want = p.tags()
    if not ids and not want and not p.structs("TagFilter"):
        raise errors.ApiError("MissingParameter", "One of ResourceId.N, Tag.N or TagFilter.N is required.", 400)
    rows = []
    for obj in by_seq(c.world.all(cls, region)):
        if ids and obj.id not in ids:
            continue
        if want and not tags.matches(obj, want):
            continue
        # the row key must not depend on other resources (a deletion between pages must not shift it)
        for i, (k, v) in enumerate(obj.tags):
            rows.append((obj.seq * (tags.MAX_TAGS_PER_RESOURCE + 1) + i,
                         {"ResourceId": obj.id, "ResourceType": rtype, "TagKey": k, "TagValue": v}))
    if service == "vpc":
        pg, extra = next_tokens(rows, p, 1, 50, page, key=lambda r: r[0])
    else:
        p_size = p.int("MaxResults", default=page, lo=1, hi=page) or page
        pg, extra = next_tokens(rows, p, 1, p_size, p_size, key=lambda r: r[0])
    return {"TagResources": {"TagResource": [r for _, r in pg]}, **extra}
