"""Elastic network interfaces: create (synchronous), attach/detach/delete (asynchronous).

State machine (SDK docstrings): Available → Attaching → InUse → Detaching → Available → Deleting →
gone.  Every precondition answers with the ENI family's documented code (aliyun-api.md §3.7–3.9).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import errors
from ..world import Resource, World, register, transition
from .instances import Instance, get_instance, instance_type_of
from .network import VSwitch, free_ip, get_vswitch, take_ip
from .security_groups import get_sg

ENI_QUOTA_PER_REGION = 50_000  # the lab's default; the real quota lives in Quota Center


@register
@dataclass
class Eni(Resource):
    KIND = "eni"
    PREFIX = "eni"
    name: str = ""
    description: str = ""
    vpc_id: str = ""
    vswitch_id: str = ""
    zone_id: str = ""
    mac: str = ""
    primary_ip: str = ""
    security_group_ids: list[str] = field(default_factory=list)
    eni_type: str = "Secondary"  # Primary | Secondary
    status: str = "Available"
    instance_id: str = ""
    device_index: int = -1
    eip_id: str = ""
    delete_on_release: bool = False


def get_eni(world: World, region_id: str, eni_id: str | None) -> Eni:
    eni = world.get(Eni, eni_id, region_id)
    if eni is None:
        raise errors.ApiError("InvalidEniId.NotFound", f"The specified NetworkInterfaceId is not found. ({eni_id})",
                              404)
    return eni


def new_primary_eni(world: World, inst: Instance, vsw: VSwitch) -> Eni:
    eni = Eni(id=world.new_id("eni", inst.region_id), region_id=inst.region_id, vpc_id=vsw.vpc_id,
              vswitch_id=vsw.id, zone_id=vsw.zone_id, mac=world.new_mac(), primary_ip=inst.private_ip,
              security_group_ids=list(inst.security_group_ids), eni_type="Primary", status="InUse",
              instance_id=inst.id, device_index=0, delete_on_release=True)
    return world.add(eni)


def create_network_interface(world: World, region_id: str, *, vswitch_id: str, security_group_ids: list[str],
                             primary_ip: str | None = None, name: str = "", description: str = "",
                             tags: list[tuple[str, str]] | None = None, delete_on_release: bool = False) -> Eni:
    vsw = get_vswitch(world, region_id, vswitch_id)
    if not security_group_ids:
        raise errors.missing("SecurityGroupId")
    if len(security_group_ids) > 5:
        raise errors.ApiError("SecurityGroupInstanceLimitExceed", "An ENI can be in at most 5 security groups.", 403)
    for sg_id in security_group_ids:
        sg = get_sg(world, region_id, sg_id)
        if sg.vpc_id != vsw.vpc_id:
            raise errors.ApiError("InvalidSecurityGroupId.NotVpc", "The specified SecurityGroupId not in VPC "
                                  f"{vsw.vpc_id}.", 403)
    if len(world.tables[Eni.KIND]) >= ENI_QUOTA_PER_REGION and \
            sum(1 for _ in world.all(Eni, region_id)) >= ENI_QUOTA_PER_REGION:
        raise errors.ApiError("MaxEniCountExceeded", "The number of ENI exceeds the limit per region.", 403)
    ip = take_ip(world, vsw, primary_ip)
    eni = Eni(id=world.new_id("eni", region_id), region_id=region_id, name=name, description=description,
              vpc_id=vsw.vpc_id, vswitch_id=vsw.id, zone_id=vsw.zone_id, mac=world.new_mac(), primary_ip=ip,
              security_group_ids=list(security_group_ids), tags=[[k, v] for k, v in (tags or [])],
              delete_on_release=delete_on_release)
    return world.add(eni)


def attach(world: World, region_id: str, instance_id: str, eni_id: str) -> Eni:
    inst = get_instance(world, region_id, instance_id, code="InvalidEcsId.NotFound")
    eni = get_eni(world, region_id, eni_id)
    if eni.eni_type == "Primary":
        raise errors.ApiError("InvalidOperation.InvalidEniType", "A primary ENI cannot be attached.", 403)
    if eni.status != "Available":
        raise errors.ApiError("InvalidOperation.InvalidEniState", f"The ENI {eni.id} is {eni.status}; it must be "
                              "Available to be attached.", 400)
    if inst.status not in ("Running", "Stopped"):
        raise errors.ApiError("InvalidOperation.InvalidEcsState", f"The instance {inst.id} is {inst.status}; it must "
                              "be Running or Stopped.", 400)
    itype = instance_type_of(world, inst)
    if not itype.hot_plug and inst.status != "Stopped":
        raise errors.ApiError("InvalidOperation.InvalidEcsState", f"Instance type {itype.instance_type_id} does not "
                              "support attaching an ENI while Running; stop the instance first.", 400)
    if eni.zone_id != inst.zone_id:
        raise errors.ApiError("InvalidOperation.AvailabilityZoneMismatch", f"The ENI is in zone {eni.zone_id} and "
                              f"the instance in {inst.zone_id}.", 403)
    if eni.vpc_id != inst.vpc_id:
        raise errors.ApiError("InvalidOperation.VpcMismatch", "The ENI and the instance are in different VPCs.", 403)
    if len(inst.eni_ids) >= itype.eni_quantity:
        raise errors.ApiError("EniPerInstanceLimitExceeded", f"The instance type {itype.instance_type_id} supports at "
                              f"most {itype.eni_quantity} ENIs including the primary ENI.", 403)
    used = {e.device_index for e in (world.get(Eni, i) for i in inst.eni_ids) if e is not None}
    eni.device_index = next(i for i in range(1, 64) if i not in used)
    eni.status = "Attaching"
    eni.instance_id = inst.id
    inst.eni_ids.append(eni.id)
    world.touch(inst)
    world.schedule(eni, "eni.attached", "eni.attach")
    return eni


@transition("eni.attached")
def _attached(world: World, eni: Eni, data: dict) -> None:
    eni.status = "InUse"


def detach(world: World, region_id: str, instance_id: str, eni_id: str) -> Eni:
    inst = get_instance(world, region_id, instance_id, code="InvalidEcsId.NotFound")
    eni = get_eni(world, region_id, eni_id)
    if eni.eni_type == "Primary":
        raise errors.ApiError("InvalidOperation.DetachPrimaryEniNotAllowed", "The primary ENI of an instance cannot "
                              "be detached.", 400)
    if eni.instance_id != inst.id:
        raise errors.ApiError("InvalidOperation.InvalidEniState", f"The ENI {eni.id} is not attached to instance "
                              f"{inst.id}.", 400)
    if eni.status != "InUse":
        raise errors.ApiError("InvalidOperation.InvalidEniState", f"The ENI {eni.id} is {eni.status}; it must be "
                              "InUse to be detached.", 400)
    if inst.status not in ("Running", "Stopped"):
        raise errors.ApiError("InvalidOperation.InvalidEcsState", f"The instance {inst.id} is {inst.status}.", 400)
    itype = instance_type_of(world, inst)
    if not itype.hot_plug and inst.status != "Stopped":
        raise errors.ApiError("InvalidOperation.InvalidEcsState", f"Instance type {itype.instance_type_id} does not "
                              "support detaching an ENI while Running; stop the instance first.", 400)
    eni.status = "Detaching"
    world.schedule(eni, "eni.detached", "eni.detach")
    return eni


@transition("eni.detached")
def _detached(world: World, eni: Eni, data: dict) -> None:
    inst = world.get(Instance, eni.instance_id)
    if inst is not None and eni.id in inst.eni_ids:
        inst.eni_ids.remove(eni.id)
        world.touch(inst)
    eni.status, eni.instance_id, eni.device_index = "Available", "", -1


def delete(world: World, region_id: str, eni_id: str) -> Eni:
    eni = get_eni(world, region_id, eni_id)
    if eni.eni_type == "Primary":
        raise errors.ApiError("InvalidOperation.InvalidEniType", "A primary ENI cannot be deleted.", 403)
    if eni.status != "Available":
        raise errors.ApiError("InvalidOperation.InvalidEniState", f"The ENI {eni.id} is {eni.status}; it must be "
                              "Available to be deleted.", 400)
    if eni.eip_id:
        raise errors.ApiError("InvalidOperation.InvalidEniState", f"The ENI {eni.id} has an EIP associated "
                              f"({eni.eip_id}); unassociate it first.", 400)
    eni.status = "Deleting"
    world.schedule(eni, "eni.deleted", "eni.delete")
    return eni


@transition("eni.deleted")
def _deleted(world: World, eni: Eni, data: dict) -> None:
    free_ip(world, eni.vswitch_id, eni.primary_ip)
    world.used_macs.discard(eni.mac)
    world.remove(eni)


def release_eni_on_instance_delete(world: World, inst: Instance, eni: Eni) -> None:
    """Instance released: the primary ENI goes with it; secondaries are detached (or deleted if
    DeleteOnRelease), and an EIP on a secondary stays with the ENI."""
    if eni.eni_type == "Primary":
        world.used_macs.discard(eni.mac)
        world.remove(eni)
        return
    eni.pending.clear()
    eni.status, eni.instance_id, eni.device_index = "Available", "", -1
    world.touch(eni)
    if eni.delete_on_release and not eni.eip_id:
        free_ip(world, eni.vswitch_id, eni.primary_ip)
        world.used_macs.discard(eni.mac)
        world.remove(eni)


def reindex(world: World) -> None:
    for eni in world.all(Eni):
        world.used_macs.add(eni.mac)
        if eni.eni_type != "Primary":
            world.used_ips[eni.vswitch_id].add(eni.primary_ip)
