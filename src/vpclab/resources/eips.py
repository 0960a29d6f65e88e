"""Elastic IP addresses: allocate, associate (EcsInstance, NetworkInterface, Nat), unassociate, release.

State machine: Available → Associating → InUse → Unassociating → Available; Releasing → gone.
During a transitional state only queries succeed (``IncorrectEipStatus``).  Codes and messages
from aliyun-api.md §4.4–4.7, including the real ``InvalidInstanId.NotFound`` spelling.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import errors
from ..world import Resource, World, register, transition
from .enis import Eni
from .instances import Instance
from .nat import NatGateway, SnatEntry


@register
@dataclass
class Eip(Resource):
    KIND = "eip"
    PREFIX = "eip"
    ip: str = ""
    status: str = "Available"
    instance_id: str = ""
    instance_type: str = ""  # EcsInstance | NetworkInterface | Nat
    private_ip: str = ""
    mode: str = "NAT"
    bandwidth: str = "5"
    internet_charge_type: str = "PayByBandwidth"
    charge_type: str = "PostPaid"
    name: str = ""
    description: str = ""
    isp: str = "BGP"
    allocation_time: float = 0.0
    converted: bool = False  # came from ConvertNatPublicIpToEip


def get_eip(world: World, region_id: str, allocation_id: str | None) -> Eip:
    eip = world.get(Eip, allocation_id, region_id)
    if eip is None:
        raise errors.ApiError("InvalidAllocationId.NotFound", f"Specified allocation ID is not found "
                              f"({allocation_id}).", 404)
    return eip


def allocate(world: World, region_id: str, *, bandwidth: str = "5", internet_charge_type: str = "PayByBandwidth",
             charge_type: str = "PostPaid", isp: str = "BGP", name: str = "", description: str = "",
             ip: str | None = None, tags: list[tuple[str, str]] | None = None) -> Eip:
    try:
        bw = int(bandwidth)
    except ValueError:
        raise errors.ApiError("InvalidParameter", 'Specified value of "Bandwidth" is not valid', 400) from None
    if not 1 <= bw <= 500:
        raise errors.ApiError("InvalidParameter", 'Specified value of "Bandwidth" is not valid', 400)
    if internet_charge_type not in ("PayByBandwidth", "PayByTraffic"):
        raise errors.ApiError("InvalidParameter", 'Specified value of "InternetChargeType" is not valid', 400)
    if charge_type not in ("PostPaid", "PrePaid"):
        raise errors.ApiError("InvalidParameter", 'Specified value of "InstanceChargeType" is not valid', 400)
    eip = Eip(id=world.new_id("eip", region_id), region_id=region_id, ip=world.allocate_public_ip(ip),
              bandwidth=str(bw), internet_charge_type=internet_charge_type, charge_type=charge_type, isp=isp,
              name=name, description=description, tags=[[k, v] for k, v in (tags or [])])
    eip.allocation_time = world.clock.now()
    return world.add(eip)


def _require(eip: Eip, status: str) -> None:
    if eip.status != status:
        raise errors.ApiError("IncorrectEipStatus", f"Current elastic IP status does not support this operation. "
                              f"({eip.id} is {eip.status})", 400)


def associate(world: World, region_id: str, allocation_id: str, instance_id: str, instance_type: str = "EcsInstance",
              private_ip: str | None = None, mode: str = "NAT") -> Eip:
    eip = get_eip(world, region_id, allocation_id)
    if instance_type not in ("EcsInstance", "NetworkInterface", "Nat"):
        raise errors.ApiError("InvalidInstanceType.ValueNotSupported", f"The lab does not emulate InstanceType "
                              f"{instance_type}.", 400)
    if mode not in ("NAT", "MULTI_BINDED", "BINDED"):
        raise errors.invalid("Mode", "Valid values: NAT, MULTI_BINDED, BINDED.")
    _require(eip, "Available")
    if instance_type == "EcsInstance":
        inst = world.get(Instance, instance_id, region_id)
        if inst is None:
            raise errors.ApiError("InvalidInstanId.NotFound", f"Specified instance does not exist. ({instance_id})",
                                  404)
        if inst.status not in ("Running", "Stopped"):
            raise errors.ApiError("IncorrectInstanceStatus", "Current instance status does not support this "
                                  "operation.", 400)
        if inst.public_ip or "instance.convert" in inst.pending:
            raise errors.ApiError("InvalidStatus.InstanceHasBandWidth", "The instance has a fixed public IP "
                                  "address (public bandwidth); an EIP cannot be associated.", 400)
        primary = world.get(Eni, inst.eni_ids[0]) if inst.eni_ids else None
        if inst.eip_id or (primary is not None and primary.eip_id):
            raise errors.ApiError("InvalidAssociation.Duplicated", "Specified instance already is associated.", 400)
        inst.eip_id = eip.id
        world.touch(inst)
        eip.private_ip = ""
    elif instance_type == "NetworkInterface":
        eni = world.get(Eni, instance_id, region_id)
        if eni is None:
            raise errors.ApiError("InvalidInstanId.NotFound", f"Specified instance does not exist. ({instance_id})",
                                  404)
        if not private_ip:
            raise errors.missing("PrivateIpAddress")
        if private_ip != eni.primary_ip:
            raise errors.ApiError("InvalidParameter", f"The PrivateIpAddress {private_ip} does not belong to ENI "
                                  f"{eni.id}.", 400)
        if eni.status not in ("Available", "InUse"):
            raise errors.ApiError("InvalidStatus.EniStatusNotSupport", f"The ENI {eni.id} is {eni.status}.", 400)
        if mode in ("BINDED", "MULTI_BINDED") and eni.status != "Available":
            raise errors.ApiError("InvalidStatus.EniStatusNotSupport", f"Mode {mode} needs the ENI detached.", 400)
        if eni.eni_type == "Primary" and mode != "NAT":
            raise errors.ApiError("InvalidParameter", "Only NAT mode is supported on a primary ENI.", 400)
        if eni.eip_id:
            raise errors.ApiError("InvalidAssociation.Duplicated", "Specified instance already is associated.", 400)
        if eni.eni_type == "Primary":
            owner = world.get(Instance, eni.instance_id)
            if owner is not None and (owner.public_ip or owner.eip_id):
                raise errors.ApiError("InvalidAssociation.Duplicated", "Specified instance already is associated.",
                                      400)
        eni.eip_id = eip.id
        world.touch(eni)
        eip.private_ip = private_ip
    else:
        ngw = world.get(NatGateway, instance_id, region_id)
        if ngw is None:
            raise errors.ApiError("InvalidInstanId.NotFound", f"Specified instance does not exist. ({instance_id})",
                                  404)
        if ngw.status != "Available":
            raise errors.ApiError("IncorrectStatus.NatGateway", f"The NAT gateway {ngw.id} is {ngw.status}.", 400)
        eip.private_ip = ngw.private_ip
    eip.instance_id, eip.instance_type, eip.mode = instance_id, instance_type, mode
    eip.status = "Associating"
    world.schedule(eip, "eip.associated", "eip.associate")
    return eip


@transition("eip.associated")
def _associated(world: World, eip: Eip, data: dict) -> None:
    eip.status = "InUse"


def unassociate(world: World, region_id: str, allocation_id: str, instance_id: str | None = None,
                instance_type: str | None = None, force: bool = False) -> Eip:
    eip = get_eip(world, region_id, allocation_id)
    _require(eip, "InUse")
    if instance_id and instance_id != eip.instance_id:
        if not any(world.get(cls, instance_id, region_id) for cls in (Instance, Eni, NatGateway)):
            raise errors.ApiError("InvalidInstanceId.NotFound", "Specified instance does not exist.", 400)
        raise errors.ApiError("InvalidBindingStatus", f"The eip binding status invalid: {eip.id} is not associated "
                              f"with {instance_id}.", 400)
    if instance_type and instance_type != eip.instance_type:
        raise errors.ApiError("InvalidInstanceType.ValueNotSupported", f"The EIP is associated with a "
                              f"{eip.instance_type}, not a {instance_type}.", 400)
    if eip.instance_type == "Nat" and not force:
        in_use = [s for s in world.all(SnatEntry, region_id)
                  if s.nat_gateway_id == eip.instance_id and eip.ip in s.snat_ip.split(",")]
        if in_use:
            raise errors.ApiError("InvalidIpStatus.HasBeenUsedBySnatTable", f"The EIP is used by SNAT entry "
                                  f"{in_use[0].id}; delete it first or set Force.", 400)
    eip.status = "Unassociating"
    world.schedule(eip, "eip.unassociated", "eip.unassociate")
    return eip


@transition("eip.unassociated")
def _unassociated(world: World, eip: Eip, data: dict) -> None:
    if eip.instance_type == "EcsInstance":
        inst = world.get(Instance, eip.instance_id)
        if inst is not None and inst.eip_id == eip.id:
            inst.eip_id = ""
            world.touch(inst)
    elif eip.instance_type == "NetworkInterface":
        eni = world.get(Eni, eip.instance_id)
        if eni is not None and eni.eip_id == eip.id:
            eni.eip_id = ""
            world.touch(eni)
    elif eip.instance_type == "Nat":
        for s in list(world.all(SnatEntry, eip.region_id)):
            if s.nat_gateway_id == eip.instance_id and eip.ip in s.snat_ip.split(","):
                world.remove(s)  # Force: the entries that used it go too
    eip.status, eip.instance_id, eip.instance_type, eip.private_ip = "Available", "", "", ""


def release(world: World, region_id: str, allocation_id: str) -> Eip:
    eip = get_eip(world, region_id, allocation_id)
    if eip.charge_type == "PrePaid":
        raise errors.ApiError("Forbidden.ChargeTypeIsPrepaid", "It's forbidden to release a prepaid EIP", 400)
    _require(eip, "Available")
    eip.status = "Releasing"
    world.schedule(eip, "eip.released", "eip.release")
    return eip


@transition("eip.released")
def _released(world: World, eip: Eip, data: dict) -> None:
    world.used_public.discard(eip.ip)
    world.remove(eip)


def nat_eips(world: World, ngw_id: str) -> list[Eip]:
    return [e for e in world.all(Eip) if e.instance_type == "Nat" and e.instance_id == ngw_id]


def reindex(world: World) -> None:
    for eip in world.all(Eip):
        world.used_public.add(eip.ip)
