"""ECS instances: creation, start/stop/reboot/delete, billing changes and the public-IP conversion.

The egress precedence rule is visible through the API: a fixed public IP shows in
``PublicIpAddress``; after ``ConvertNatPublicIpToEip`` the same address shows in ``EipAddress``
(and in DescribeEipAddresses), which the conversion makes visible after a short lag, as clients
observe in the real cloud (aliyun-api.md §3.10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..world import Resource, World, register, transition
from .network import VSwitch, get_vswitch, take_ip
from .security_groups import get_sg

STABLE = ("Running", "Stopped")


@register
@dataclass
class Instance(Resource):
    KIND = "instance"
    PREFIX = "i"
    name: str = ""
    hostname: str = ""
    description: str = ""
    zone_id: str = ""
    instance_type: str = ""
    image_id: str = ""
    status: str = "Pending"
    vpc_id: str = ""
    vswitch_id: str = ""
    private_ip: str = ""
    security_group_ids: list[str] = field(default_factory=list)
    charge_type: str = "PostPaid"
    internet_charge_type: str = "PayByTraffic"
    bw_out: int = 0
    bw_in: int = 0
    public_ip: str = ""  # the fixed ("NAT") public IP; "" when none
    eip_id: str = ""  # EIP associated with the instance (EcsInstance)
    eni_ids: list[str] = field(default_factory=list)  # primary first, then secondaries by attach order
    started: float = 0.0
    expired_time: float = 0.0
    stopped_mode: str = ""
    key_pair_name: str = ""
    # lab conditions (not resource attributes of the API): the Cloud Assistant agent's heartbeat,
    # and what the guest image does with NICs at boot (data plane)
    cloud_assistant: bool = True
    boot: dict[str, Any] = field(default_factory=dict)


def get_instance(world: World, region_id: str, instance_id: str | None, code: str = "InvalidInstanceId.NotFound",
                 status: int = 404) -> Instance:
    inst = world.get(Instance, instance_id, region_id)
    if inst is None:
        messages = {
            "InvalidInstanId.NotFound": "Specified instance does not exist.",
            "InvalidEcsId.NotFound": "The specified EcsId is not found.",
        }
        raise errors.ApiError(code, f"{messages.get(code, 'The specified InstanceId does not exist.')} "
                              f"({instance_id})", status)
    return inst


def instance_type_of(world: World, inst: Instance):
    return world.catalogue.instance_types[inst.instance_type]


def _busy(inst: Instance) -> bool:
    return any(n.startswith(("instance.convert", "instance.charge")) for n in inst.pending)


def run_instances(world: World, region_id: str, *, image_id: str, instance_type: str, vswitch_id: str,
                  security_group_ids: list[str], amount: int = 1, name: str = "", hostname: str = "",
                  description: str = "", bw_out: int = 0, bw_in: int = 0, internet_charge_type: str = "PayByTraffic",
                  charge_type: str = "PostPaid", period_months: int = 1, private_ip: str | None = None,
                  zone_id: str | None = None, tags: list[tuple[str, str]] | None = None,
                  public_ip: str | None = None, cloud_assistant: bool = True, boot: dict[str, Any] | None = None,
                  status: str | None = None, unique_suffix: bool = False) -> list[Instance]:
    if world.catalogue.region(region_id) is None:
        raise errors.region_not_found(region_id)
    image = world.catalogue.images.get(image_id)
    if image is None:
        raise errors.ApiError("InvalidImageId.NotFound", f"The specified ImageId does not exist. ({image_id})", 404)
    itype = world.catalogue.instance_types.get(instance_type)
    if itype is None:
        raise errors.ApiError("InvalidInstanceType.NotFound", f"The specified InstanceType does not exist. "
                              f"({instance_type})", 404)
    vsw: VSwitch = get_vswitch(world, region_id, vswitch_id)
    if vsw.status != "Available":
        raise errors.ApiError("IncorrectVSwitchStatus", "The current status of the vSwitch does not support this "
                              "operation.", 400)
    if zone_id and zone_id != vsw.zone_id:
        raise errors.ApiError("InvalidVSwitchId.ZoneMismatch", f"The specified vSwitch {vsw.id} is not in zone "
                              f"{zone_id}.", 400)
    if not security_group_ids:
        raise errors.missing("SecurityGroupId")
    for sg_id in security_group_ids:
        sg = get_sg(world, region_id, sg_id)
        if sg.vpc_id != vsw.vpc_id:
            raise errors.ApiError("InvalidSecurityGroup.VpcMismatch", f"The security group {sg_id} and the vSwitch "
                                  "are not in the same VPC.", 400)
    if not (1 <= amount <= 100):
        raise errors.invalid("Amount", "Valid values: 1 to 100.")
    if private_ip and amount != 1:
        raise errors.invalid("PrivateIpAddress", "It can only be set when Amount is 1.")
    if not (0 <= bw_out <= 200):
        raise errors.ApiError("InvalidInternetMaxBandwidthOut.Malformed", "InternetMaxBandwidthOut must be 0 to "
                              "200 Mbit/s.", 400)
    if charge_type not in ("PostPaid", "PrePaid"):
        raise errors.invalid("InstanceChargeType", "Valid values: PrePaid, PostPaid.")
    if internet_charge_type not in ("PayByTraffic", "PayByBandwidth"):
        raise errors.invalid("InternetChargeType", "Valid values: PayByTraffic, PayByBandwidth.")
    if public_ip and bw_out <= 0:
        raise errors.invalid("InternetMaxBandwidthOut", "A fixed public IP needs InternetMaxBandwidthOut > 0.")
    if len(world.used_ips[vsw.id]) + amount > _usable(vsw):
        raise errors.ApiError("InvalidVSwitchId.IpNotEnough", f"The specified vSwitch {vsw.id} does not have enough "
                              "IP addresses.", 403)
    from .enis import new_primary_eni

    now = world.clock.now()
    out = []
    for n in range(amount):
        iid = world.new_id("i", region_id)
        iname = name or iid
        if unique_suffix and amount > 1:
            iname = f"{iname}{n + 1:03d}"
        inst = Instance(id=iid, region_id=region_id, name=iname, hostname=hostname or iid.replace("-", ""),
                        description=description, zone_id=vsw.zone_id, instance_type=itype.instance_type_id,
                        image_id=image.image_id, vpc_id=vsw.vpc_id, vswitch_id=vsw.id,
                        security_group_ids=list(security_group_ids), charge_type=charge_type,
                        internet_charge_type=internet_charge_type, bw_out=bw_out, bw_in=bw_in or (100 if bw_out else 0),
                        cloud_assistant=cloud_assistant and image.os_type in ("linux", "windows"),
                        boot=dict(boot or {}), tags=[[k, v] for k, v in (tags or [])])
        if charge_type == "PrePaid":
            inst.expired_time = now + max(period_months, 1) * 30 * 86400
        inst.private_ip = take_ip(world, vsw, private_ip)
        if bw_out > 0:
            inst.public_ip = world.allocate_public_ip(public_ip)
        eni = new_primary_eni(world, inst, vsw)
        inst.eni_ids = [eni.id]
        world.add(inst)
        if status == "Stopped":
            inst.status = "Stopped"
            inst.stopped_mode = "KeepCharging"
        elif status == "Running":
            inst.status, inst.started = "Running", now
        else:
            world.schedule(inst, "instance.created", "instance.create")
        out.append(inst)
    return out


def _usable(vsw: VSwitch) -> int:
    from .network import assignable_count

    return assignable_count(vsw)


@transition("instance.created")
def _created(world: World, inst: Instance, data: dict) -> None:
    inst.status = "Running"
    inst.started = world.clock.now()


def _require_status(inst: Instance, allowed: tuple[str, ...], code: str = "IncorrectInstanceStatus",
                    status: int = 403) -> None:
    if inst.status not in allowed:
        raise errors.ApiError(code, f"The current status of the resource does not support this operation. "
                              f"(instance {inst.id} is {inst.status})", status)


def start_instance(world: World, inst: Instance) -> None:
    _require_status(inst, ("Stopped",))
    inst.status = "Starting"
    world.schedule(inst, "instance.started", "instance.start")


@transition("instance.started")
def _started(world: World, inst: Instance, data: dict) -> None:
    inst.status = "Running"
    inst.started = world.clock.now()
    inst.stopped_mode = ""


def stop_instance(world: World, inst: Instance, stopped_mode: str = "KeepCharging") -> None:
    _require_status(inst, ("Running",))
    inst.status = "Stopping"
    world.schedule(inst, "instance.stopped", "instance.stop", mode=stopped_mode)


@transition("instance.stopped")
def _stopped(world: World, inst: Instance, data: dict) -> None:
    inst.status = "Stopped"
    inst.stopped_mode = data.get("mode", "KeepCharging")


def reboot_instance(world: World, inst: Instance) -> None:
    _require_status(inst, ("Running",))
    inst.status = "Stopping"
    world.schedule(inst, "instance.reboot_down", "instance.reboot")


@transition("instance.reboot_down")
def _reboot_down(world: World, inst: Instance, data: dict) -> None:
    inst.status = "Starting"
    world.schedule(inst, "instance.started", "instance.reboot")
    world.emit_event("instance.rebooted", inst)


def delete_instance(world: World, inst: Instance, force: bool = False) -> None:
    if inst.status not in ("Stopped",) and not (force and inst.status in ("Running", "Stopped", "Pending")):
        raise errors.ApiError("IncorrectInstanceStatus", "The current status of the resource does not support this "
                              f"operation. (instance {inst.id} is {inst.status}; stop it or set Force)", 403)
    if inst.charge_type == "PrePaid" and inst.expired_time > world.clock.now():
        raise errors.ApiError("ChargeTypeViolation", "The operation is not permitted due to charge type of the "
                              "instance.", 403)
    from .eips import Eip
    from .enis import Eni, release_eni_on_instance_delete

    if inst.eip_id:
        eip = world.get(Eip, inst.eip_id)
        if eip is not None:
            eip.status, eip.instance_id, eip.instance_type, eip.private_ip = "Available", "", "", ""
            eip.pending.clear()
            world.touch(eip)
    for eni_id in list(inst.eni_ids):
        eni = world.get(Eni, eni_id)
        if eni is not None:
            release_eni_on_instance_delete(world, inst, eni)
    if inst.public_ip:
        world.used_public.discard(inst.public_ip)
    from .network import free_ip

    free_ip(world, inst.vswitch_id, inst.private_ip)
    world.remove(inst)


# --- billing and conversion ----------------------------------------------------------------

def modify_charge_type(world: World, insts: list[Instance], target: str) -> None:
    for inst in insts:
        _require_status(inst, STABLE, "InvalidStatus.ValueNotSupported", 400)
        if _busy(inst):
            raise errors.operation_conflict()
        if inst.charge_type == target:
            raise errors.ApiError("InvalidInstanceChargeType.ValueNotSupported", f"The instance {inst.id} is "
                                  f"already {target}.", 400)
    for inst in insts:
        world.schedule(inst, "instance.charge", "instance.charge", target=target)


@transition("instance.charge")
def _charged(world: World, inst: Instance, data: dict) -> None:
    inst.charge_type = data["target"]
    if inst.charge_type == "PostPaid":
        inst.expired_time = 0.0
    else:
        inst.expired_time = world.clock.now() + 30 * 86400


def convert_public_ip(world: World, inst: Instance, rule: str = "current") -> None:
    """ConvertNatPublicIpToEip.  ``rule``: ``current`` (PrePaid needs PayByTraffic) or ``legacy``
    (PrePaid must first become PostPaid, as the 2021 docs and the seed procedure say)."""
    _require_status(inst, STABLE)
    if _busy(inst):
        raise errors.operation_conflict()
    if inst.eip_id:
        raise errors.ApiError("OperationDenied", "The instance already has an EIP associated; there is no fixed "
                              "public IP to convert.", 403)
    if not inst.public_ip or inst.bw_out <= 0:
        raise errors.ApiError("OperationDenied", "The instance does not have a public IP address (public bandwidth "
                              "is 0 Mbit/s).", 403)
    if inst.charge_type == "PrePaid":
        if rule == "legacy":
            raise errors.ApiError("ChargeTypeViolation", "The operation is not permitted due to charge type of the "
                                  "instance: change a subscription instance to pay-as-you-go first.", 403)
        if inst.internet_charge_type != "PayByTraffic":
            raise errors.ApiError("InvalidInternetChargeType.ValueNotSupported", "A subscription instance must use "
                                  "pay-by-traffic to convert its public IP address.", 403)
        if inst.expired_time and inst.expired_time - world.clock.now() < 86400:
            raise errors.ApiError("InvalidEndTime.OperateNotSupport", "The subscription instance expires within 24 "
                                  "hours.", 403)
    world.schedule(inst, "instance.convert", "instance.convert")


@transition("instance.convert")
def _converted(world: World, inst: Instance, data: dict) -> None:
    from .eips import Eip

    eip = Eip(id=world.new_id("eip", inst.region_id), region_id=inst.region_id, ip=inst.public_ip,
              status="InUse", instance_id=inst.id, instance_type="EcsInstance", mode="NAT",
              bandwidth=str(inst.bw_out), internet_charge_type=inst.internet_charge_type, charge_type="PostPaid",
              converted=True)
    eip.allocation_time = world.clock.now()
    world.add(eip)
    inst.public_ip = ""
    inst.eip_id = eip.id


def reindex(world: World) -> None:
    for inst in world.all(Instance):
        world.used_ips[inst.vswitch_id].add(inst.private_ip)
        if inst.public_ip:
            world.used_public.add(inst.public_ip)
