"""Scenario files: a region described in YAML, built through the same operations the API uses.

Because the loader calls the resource operations (never writes tables directly), a scenario can
only describe what the API could have created; an impossible scenario fails with the operation's
own error, located at the field that asked for it.
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import errors
from .resources import eips, instances, nat, network, security_groups
from .world import World

DEFAULT_IMAGE = "aliyun_3_x64_20G_alibase_20240819.vhd"
DEFAULT_TYPE = "ecs.g7.large"


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names the file, the field and the problem."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _ip(v: str | None) -> str | None:
    if v is not None and v != "auto":
        ipaddress.IPv4Address(v)
    return v


class Rule(_M):
    protocol: Literal["tcp", "udp", "icmp", "all"] = "tcp"
    ports: str = Field("22/22", description="PortRange, e.g. 22/22, -1/-1 for icmp/all")
    source: str = "0.0.0.0/0"
    policy: Literal["accept", "drop"] = "accept"
    priority: int = Field(1, ge=1, le=100)


class SecurityGroupSpec(_M):
    name: str
    description: str = ""
    rules: list[Rule] = Field(default_factory=list)


class VSwitchSpec(_M):
    name: str
    zone: str
    cidr: str


class SnatSpec(_M):
    vswitch: str | None = None
    cidr: str | None = None
    ips: list[str] = Field(default_factory=list, description="SNAT IPs; default: all the NAT gateway's EIPs")
    name: str = ""


class EipSpec(_M):
    ip: str | None = None
    bandwidth: int = Field(5, ge=1, le=500)
    name: str = ""
    internet_charge_type: Literal["PayByTraffic", "PayByBandwidth"] = "PayByTraffic"

    _check_ip = field_validator("ip")(classmethod(lambda cls, v: _ip(v)))


class NatSpec(_M):
    name: str
    vswitch: str
    eips: list[EipSpec] = Field(default_factory=lambda: [EipSpec()])
    snat: list[SnatSpec] = Field(default_factory=list)
    default_route: bool = Field(True, description="keep the 0.0.0.0/0 -> NAT gateway route that creation adds")


class BootSpec(_M):
    """What the guest image does with NICs at boot (used by the data plane)."""

    secondary_nics: Literal["default-route", "address-only", "none"] = "default-route"
    secondary_metric: int = Field(200, ge=1, le=65535)
    rp_filter: Literal[0, 1, 2] = 1


class InstanceSpec(_M):
    name: str
    vswitch: str
    security_groups: list[str] = Field(min_length=1)
    image: str = DEFAULT_IMAGE
    type: str = DEFAULT_TYPE
    count: int = Field(1, ge=1, le=20000)
    private_ip: str | None = None
    public_ip: str | None = Field(None, description="a fixed public IP: an address, 'auto', or none")
    bandwidth_out: int | None = Field(None, ge=0, le=200)
    eip: EipSpec | None = Field(None, description="an EIP associated with the instance's primary NIC")
    charge_type: Literal["PostPaid", "PrePaid"] = "PostPaid"
    internet_charge_type: Literal["PayByTraffic", "PayByBandwidth"] = "PayByTraffic"
    status: Literal["Running", "Stopped"] = "Running"
    cloud_assistant: bool = True
    boot: BootSpec = Field(default_factory=BootSpec)
    tags: dict[str, str] = Field(default_factory=dict)
    description: str = ""

    _check_ips = field_validator("private_ip", "public_ip")(classmethod(lambda cls, v: _ip(v)))


class VpcSpec(_M):
    name: str
    cidr: str
    vswitches: list[VSwitchSpec] = Field(default_factory=list)
    security_groups: list[SecurityGroupSpec] = Field(default_factory=list)
    nat_gateways: list[NatSpec] = Field(default_factory=list)
    instances: list[InstanceSpec] = Field(default_factory=list)

    @field_validator("vswitches", "security_groups", "nat_gateways", "instances")
    @classmethod
    def _unique_names(cls, items: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for item in items:
            if item.name in seen:
                raise ValueError(f"the name {item.name!r} is used twice; names are how the scenario refers to things")
            seen.add(item.name)
        return items


class Scenario(_M):
    region: str = "cn-hangzhou"
    description: str = ""
    public_ip_pools: list[str] = Field(default_factory=list)
    vpcs: list[VpcSpec] = Field(default_factory=list)
    eips: list[EipSpec] = Field(default_factory=list, description="EIPs allocated and left Available")


def parse(data: Any, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = _loc(err["loc"])
            lines.append(f"{source}: {loc or '<top>'}: {err['msg']}")
        raise ScenarioError("\n".join(lines)) from None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_file(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScenarioError(f"{p}: not valid YAML: {e}") from None
    return parse(data, str(p))


def build(world: World, sc: Scenario, source: str = "<scenario>") -> dict[str, Any]:
    """Create everything the scenario describes; returns {names -> ids} for tests and tools."""
    region = sc.region
    if world.catalogue.region(region) is None:
        raise ScenarioError(f"{source}: region: unknown region {region!r} (known: "
                            f"{', '.join(sorted(world.catalogue.regions))})")
    if sc.public_ip_pools:
        try:
            world.public_pools = [ipaddress.ip_network(p) for p in sc.public_ip_pools]  # type: ignore[misc]
        except ValueError as e:
            raise ScenarioError(f"{source}: public_ip_pools: {e}") from None
    reserved = _reserved_ips(sc)
    world.reserved_public |= reserved
    ids: dict[str, Any] = {"vpcs": {}, "vswitches": {}, "security_groups": {}, "nat_gateways": {}, "instances": {},
                           "eips": {}}

    def at(path: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
            world.advance(math.inf)
            return out
        except errors.ApiError as e:
            raise ScenarioError(f"{source}: {path}: {e.code}: {e.message}") from None

    with world.lock:
        try:
            for vi, v in enumerate(sc.vpcs):
                vp = f"vpcs[{vi}]"
                vpc = at(f"{vp}.cidr", network.create_vpc, world, region, v.cidr, name=v.name)
                ids["vpcs"][v.name] = vpc.id
                vsws: dict[str, str] = {}
                for si, s in enumerate(v.vswitches):
                    vsw = at(f"{vp}.vswitches[{si}]", network.create_vswitch, world, region, vpc.id, s.zone, s.cidr,
                             name=s.name)
                    vsws[s.name] = vsw.id
                    ids["vswitches"][s.name] = vsw.id
                sgs: dict[str, str] = {}
                for gi, g in enumerate(v.security_groups):
                    sg = at(f"{vp}.security_groups[{gi}]", security_groups.create_security_group, world, region,
                            vpc.id, name=g.name, description=g.description)
                    perms = [{"IpProtocol": r.protocol, "PortRange": r.ports, "SourceCidrIp": r.source,
                              "Policy": r.policy, "Priority": str(r.priority)} for r in g.rules]
                    at(f"{vp}.security_groups[{gi}].rules", security_groups.authorize, world, sg, perms)
                    sgs[g.name] = sg.id
                    ids["security_groups"][g.name] = sg.id
                for ni, n in enumerate(v.nat_gateways):
                    np_ = f"{vp}.nat_gateways[{ni}]"
                    ngw = at(f"{np_}.vswitch", nat.create_nat_gateway, world, region, vpc.id,
                             _ref(vsws, n.vswitch, f"{source}: {np_}.vswitch", "vSwitch"), name=n.name)
                    ids["nat_gateways"][n.name] = ngw.id
                    nat_ips = []
                    for ei, e in enumerate(n.eips):
                        eip = at(f"{np_}.eips[{ei}]", _allocate, world, region, e, reserved)
                        at(f"{np_}.eips[{ei}]", eips.associate, world, region, eip.id, ngw.id, "Nat")
                        nat_ips.append(eip.ip)
                    for si, s in enumerate(n.snat):
                        sp = f"{np_}.snat[{si}]"
                        if bool(s.vswitch) == bool(s.cidr):
                            raise ScenarioError(f"{source}: {sp}: give exactly one of vswitch and cidr")
                        at(sp, nat.create_snat_entry, world, region, ngw.snat_table_id,
                           ",".join(s.ips or nat_ips[:1]),
                           source_vswitch_id=_ref(vsws, s.vswitch, f"{source}: {sp}.vswitch", "vSwitch")
                           if s.vswitch else "", source_cidr=s.cidr or "", name=s.name)
                    if not n.default_route:
                        route = network.default_route(world, vpc.route_table_id)
                        if route is not None:
                            at(f"{np_}.default_route", network.delete_route_entry, world, region,
                               vpc.route_table_id, route.id, None, None)
                for ii, spec in enumerate(v.instances):
                    ip_ = f"{vp}.instances[{ii}]"
                    made = _instances(world, region, spec, vsws, sgs, f"{source}: {ip_}", at, ip_, reserved)
                    for inst in made:
                        ids["instances"][inst.name] = inst.id
            for ei, e in enumerate(sc.eips):
                eip = at(f"eips[{ei}]", _allocate, world, region, e, reserved)
                ids["eips"][e.name or eip.ip] = eip.id
        finally:
            world.reserved_public -= reserved
            world.commit()
    return ids


def _reserved_ips(sc: Scenario) -> set[str]:
    """Addresses the scenario names explicitly: 'auto' allocation must not take them first."""
    out: set[str] = set()
    for v in sc.vpcs:
        for n in v.nat_gateways:
            out |= {e.ip for e in n.eips if e.ip}
        for i in v.instances:
            if i.public_ip and i.public_ip != "auto":
                out.add(i.public_ip)
            if i.eip and i.eip.ip:
                out.add(i.eip.ip)
    out |= {e.ip for e in sc.eips if e.ip}
    return out


def _ref(table: dict[str, str], name: str | None, where: str, what: str) -> str:
    if name not in table:
        raise ScenarioError(f"{where}: no {what} named {name!r} in this VPC (known: {', '.join(table) or 'none'})")
    return table[name]


def _allocate(world: World, region: str, e: EipSpec, reserved: set[str]) -> Any:
    if e.ip:
        world.reserved_public.discard(e.ip)
    return eips.allocate(world, region, bandwidth=str(e.bandwidth), internet_charge_type=e.internet_charge_type,
                         name=e.name, ip=e.ip)


def _instances(world: World, region: str, spec: InstanceSpec, vsws: dict[str, str], sgs: dict[str, str],
               where: str, at: Any, path: str, reserved: set[str]) -> list[Any]:
    vsw_id = _ref(vsws, spec.vswitch, f"{where}.vswitch", "vSwitch")
    sg_ids = [_ref(sgs, g, f"{where}.security_groups", "security group") for g in spec.security_groups]
    if spec.count > 1 and (spec.private_ip or (spec.public_ip and spec.public_ip != "auto") or
                           (spec.eip and spec.eip.ip)):
        raise ScenarioError(f"{where}: fixed addresses need count: 1 (use 'auto' or leave them out)")
    if spec.public_ip and spec.eip:
        raise ScenarioError(f"{where}: an instance has a fixed public IP or an EIP, not both")
    # as with RunInstances, public bandwidth > 0 always comes with a fixed public IP
    bw = spec.bandwidth_out if spec.bandwidth_out is not None else (5 if spec.public_ip else 0)
    if spec.public_ip and bw <= 0:
        raise ScenarioError(f"{where}.bandwidth_out: a fixed public IP needs bandwidth_out > 0")
    if spec.public_ip and spec.public_ip != "auto":
        world.reserved_public.discard(spec.public_ip)
    out = []
    for n in range(spec.count):
        name = spec.name if spec.count == 1 else f"{spec.name}-{n + 1:0{len(str(spec.count))}d}"
        inst = at(path, instances.run_instances, world, region, image_id=spec.image, instance_type=spec.type,
                  vswitch_id=vsw_id, security_group_ids=sg_ids, name=name, description=spec.description,
                  bw_out=bw,
                  internet_charge_type=spec.internet_charge_type, charge_type=spec.charge_type,
                  private_ip=spec.private_ip,
                  public_ip=None if spec.public_ip in (None, "auto") else spec.public_ip,
                  tags=list(spec.tags.items()), cloud_assistant=spec.cloud_assistant, boot=spec.boot.model_dump(),
                  status=spec.status)[0]
        if spec.eip:
            eip = at(f"{path}.eip", _allocate, world, region, spec.eip, reserved)
            at(f"{path}.eip", eips.associate, world, region, eip.id, inst.id, "EcsInstance")
        out.append(inst)
    return out
