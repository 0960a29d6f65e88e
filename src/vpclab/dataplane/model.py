"""The data plane's desired state, derived from the emulated cloud (pure data, no kernel).

The reconciler takes a snapshot under the world lock, then makes the kernel match it outside the
lock.  Everything the kernel needs is here: which instances run, which NICs they have, the VPC
route tables, SNAT entries, and the 1:1 public mappings that make the egress precedence rule true.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ..resources.eips import Eip
from ..resources.enis import Eni
from ..resources.instances import Instance
from ..resources.nat import NatGateway, SnatEntry
from ..resources.network import RouteEntry, Vpc, VSwitch
from ..world import World


@dataclass(frozen=True)
class NicSpec:
    eni_id: str
    dev: int  # device index: eth<dev> in the guest
    mac: str
    ip: str
    prefix: int
    gateway: str
    vswitch: str
    primary: bool


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    name: str
    vpc: str
    status: str
    nics: tuple[NicSpec, ...]
    boot: tuple[tuple[str, Any], ...]
    linux: bool

    @property
    def running(self) -> bool:
        return self.status in ("Running", "Stopping")

    def boot_dict(self) -> dict[str, Any]:
        return dict(self.boot)


@dataclass(frozen=True)
class VSwitchSpec:
    vswitch_id: str
    vpc: str
    cidr: str
    gateway: str
    prefix: int


@dataclass(frozen=True)
class NatSpec:
    nat_id: str
    vpc: str
    available: bool
    eips: tuple[str, ...]
    snat: tuple[tuple[str, str], ...]  # (source CIDR, SNAT IP)


@dataclass(frozen=True)
class VpcSpec:
    vpc_id: str
    cidr: str
    default_nat: str | None  # the NAT gateway 0.0.0.0/0 points at (Available route), if any
    routes: tuple[tuple[str, str], ...]  # other routes: (destination, next-hop private IP)


@dataclass
class Desired:
    vpcs: dict[str, VpcSpec] = field(default_factory=dict)
    vswitches: dict[str, VSwitchSpec] = field(default_factory=dict)
    nats: dict[str, NatSpec] = field(default_factory=dict)
    instances: dict[str, InstanceSpec] = field(default_factory=dict)
    mappings: dict[str, tuple[str, str]] = field(default_factory=dict)  # private IP -> (public IP, vpc id)
    ip_owner: dict[str, tuple[str, str]] = field(default_factory=dict)  # (vpc, private ip) key -> (instance, eni)


def snapshot(world: World) -> Desired:
    """Read everything the kernel must reflect.  Call under ``world.lock``."""
    d = Desired()
    for vpc in world.all(Vpc):
        if vpc.status != "Available":
            continue
        default_nat, routes = None, []
        for e in world.all(RouteEntry):
            if e.route_table_id != vpc.route_table_id or e.status != "Available":
                continue
            if e.dest_cidr == "0.0.0.0/0" and e.next_hop_type == "NatGateway":
                default_nat = e.next_hop_id
            elif e.next_hop_type in ("Instance", "NetworkInterface"):
                target = _private_ip_of(world, e.next_hop_type, e.next_hop_id)
                if target:
                    routes.append((e.dest_cidr, target))
        d.vpcs[vpc.id] = VpcSpec(vpc.id, vpc.cidr, default_nat, tuple(sorted(routes)))
    for vsw in world.all(VSwitch):
        if vsw.vpc_id in d.vpcs and vsw.status == "Available":
            net = ipaddress.ip_network(vsw.cidr)
            d.vswitches[vsw.id] = VSwitchSpec(vsw.id, vsw.vpc_id, vsw.cidr, str(net.broadcast_address - 2),
                                              net.prefixlen)
    for ngw in world.all(NatGateway):
        if ngw.vpc_id not in d.vpcs:
            continue
        eips = tuple(sorted(e.ip for e in world.all(Eip) if e.instance_type == "Nat" and e.instance_id == ngw.id
                            and e.status == "InUse"))
        snat = []
        for s in world.all(SnatEntry):
            if s.nat_gateway_id != ngw.id or s.status != "Available":
                continue
            cidr = s.source_cidr or (d.vswitches[s.source_vswitch_id].cidr if s.source_vswitch_id in d.vswitches
                                     else "")
            ip = s.snat_ip.split(",")[0]
            if cidr and ip in eips:
                snat.append((cidr, ip))
        # most specific first: nft evaluates rules in order
        snat.sort(key=lambda x: -ipaddress.ip_network(x[0]).prefixlen)
        d.nats[ngw.id] = NatSpec(ngw.id, ngw.vpc_id, ngw.status == "Available", eips, tuple(snat))
    for inst in world.all(Instance):
        if inst.vpc_id not in d.vpcs:
            continue
        nics = []
        for eni_id in inst.eni_ids:
            eni = world.get(Eni, eni_id)
            if eni is None or eni.vswitch_id not in d.vswitches:
                continue
            if eni.eni_type != "Primary" and eni.status not in ("InUse", "Detaching"):
                continue  # hot-plugged when the attach completes, unplugged when the detach does
            vsw = d.vswitches[eni.vswitch_id]
            nics.append(NicSpec(eni.id, eni.device_index, eni.mac, eni.primary_ip, vsw.prefix, vsw.gateway,
                                vsw.vswitch_id, eni.eni_type == "Primary"))
            d.ip_owner[f"{inst.vpc_id}/{eni.primary_ip}"] = (inst.id, eni.id)
        image = world.catalogue.images.get(inst.image_id)
        d.instances[inst.id] = InstanceSpec(inst.id, inst.name, inst.vpc_id, inst.status,
                                            tuple(sorted(nics, key=lambda n: n.dev)),
                                            tuple(sorted(inst.boot.items())), image is None or image.os_type == "linux")
        # 1:1 mappings: the fixed public IP or an EIP on the primary IP; only while InUse
        if inst.public_ip:
            d.mappings[inst.private_ip] = (inst.public_ip, inst.vpc_id)
        eip = world.get(Eip, inst.eip_id) if inst.eip_id else None
        if eip is not None and eip.status == "InUse":
            d.mappings[inst.private_ip] = (eip.ip, inst.vpc_id)
    for eip in world.all(Eip):
        if eip.instance_type == "NetworkInterface" and eip.status == "InUse":
            eni = world.get(Eni, eip.instance_id)
            if eni is not None and eni.vpc_id in d.vpcs:
                d.mappings[eip.private_ip or eni.primary_ip] = (eip.ip, eni.vpc_id)
    return d


def _private_ip_of(world: World, kind: str, rid: str) -> str | None:
    if kind == "Instance":
        inst = world.get(Instance, rid)
        return inst.private_ip if inst else None
    eni = world.get(Eni, rid)
    return eni.primary_ip if eni else None
