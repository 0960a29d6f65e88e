"""One snapshot of a region: everything the egress analysis and the preflight checks need, read
with batched, paginated calls (≈ N/100 DescribeInstances + N/500 DescribeNetworkInterfaces + EIPs/100
+ a constant), never one call per instance.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_vpc20160428 import models as vpc

from .cloud import Cloud

TAG_MANAGED = "egressctl:managed"
TAG_PLAN = "egressctl:plan"
TAG_INSTANCE = "egressctl:instance"


@dataclass
class Nic:
    eni_id: str
    mac: str
    ip: str
    eni_type: str  # Primary | Secondary
    status: str = ""
    instance_id: str = ""
    vswitch_id: str = ""
    eip_allocation_id: str = ""
    eip_ip: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def tool_managed(self) -> bool:
        return self.tags.get(TAG_MANAGED) == "true"


@dataclass
class Instance:
    instance_id: str
    name: str
    status: str
    zone_id: str
    vpc_id: str
    vswitch_id: str
    private_ip: str
    instance_type: str
    os_type: str
    os_name: str
    network_type: str
    charge_type: str
    internet_charge_type: str
    bw_out: int
    public_ip: str
    eip_allocation_id: str
    eip_ip: str
    security_group_ids: list[str]
    nic_ids: list[str]
    tags: dict[str, str]
    expired_time: str = ""

    @staticmethod
    def from_sdk(i: Any) -> Instance:
        vpc_attr = i.vpc_attributes
        eip = i.eip_address
        public = (i.public_ip_address.ip_address or []) if i.public_ip_address else []
        nics = i.network_interfaces.network_interface if i.network_interfaces else []
        return Instance(
            instance_id=i.instance_id, name=i.instance_name or "", status=i.status or "", zone_id=i.zone_id or "",
            vpc_id=(vpc_attr.vpc_id if vpc_attr else "") or "",
            vswitch_id=(vpc_attr.v_switch_id if vpc_attr else "") or "",
            private_ip=((vpc_attr.private_ip_address.ip_address or [""])[0]
                        if vpc_attr and vpc_attr.private_ip_address else ""),
            instance_type=i.instance_type or "", os_type=(i.ostype or "").lower(), os_name=i.osname or "",
            network_type=i.instance_network_type or "", charge_type=i.instance_charge_type or "",
            internet_charge_type=i.internet_charge_type or "", bw_out=int(i.internet_max_bandwidth_out or 0),
            public_ip=public[0] if public else "", eip_allocation_id=(eip.allocation_id if eip else "") or "",
            eip_ip=(eip.ip_address if eip else "") or "",
            security_group_ids=list(i.security_group_ids.security_group_id or []) if i.security_group_ids else [],
            nic_ids=[n.network_interface_id for n in nics],
            tags={t.tag_key: t.tag_value for t in (i.tags.tag if i.tags and i.tags.tag else [])},
            expired_time=i.expired_time or "")


@dataclass
class Eip:
    allocation_id: str
    ip: str
    status: str
    instance_type: str
    instance_id: str
    private_ip: str
    mode: str
    charge_type: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class VSwitch:
    vswitch_id: str
    vpc_id: str
    zone_id: str
    cidr: str
    available_ips: int
    route_table_id: str

    @property
    def gateway(self) -> str:
        return str(ipaddress.ip_network(self.cidr).broadcast_address - 2)

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.cidr).prefixlen


@dataclass
class Nat:
    nat_gateway_id: str
    vpc_id: str
    status: str
    snat_table_id: str
    ips: list[str]


@dataclass
class Snat:
    snat_entry_id: str
    nat_gateway_id: str
    snat_ips: list[str]
    source_vswitch_id: str
    source_cidr: str
    status: str


@dataclass
class Route:
    route_table_id: str
    dest: str
    next_hop_type: str
    next_hop_id: str
    status: str


@dataclass
class Inventory:
    region: str
    instances: dict[str, Instance] = field(default_factory=dict)
    nics: dict[str, Nic] = field(default_factory=dict)
    eips: dict[str, Eip] = field(default_factory=dict)
    vswitches: dict[str, VSwitch] = field(default_factory=dict)
    vpc_route_tables: dict[str, str] = field(default_factory=dict)
    nats: dict[str, Nat] = field(default_factory=dict)
    snats: list[Snat] = field(default_factory=list)
    routes: dict[str, list[Route]] = field(default_factory=dict)
    sg_rules: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    eni_quota: dict[str, int] = field(default_factory=dict)
    assistant: dict[str, bool] = field(default_factory=dict)

    def eip_by_ip(self, ip: str) -> Eip | None:
        return next((e for e in self.eips.values() if e.ip == ip), None)

    def nics_of(self, instance_id: str) -> list[Nic]:
        inst = self.instances[instance_id]
        return [self.nics[n] for n in inst.nic_ids if n in self.nics]

    def primary_nic(self, instance_id: str) -> Nic | None:
        return next((n for n in self.nics_of(instance_id) if n.eni_type == "Primary"), None)


def _pages(fetch: Any, wrap: Any) -> Iterator[Any]:
    """Walk NextToken pages: ``fetch(token) -> body``, ``wrap(body) -> items``."""
    token = None
    while True:
        body = fetch(token)
        yield from wrap(body) or []
        token = getattr(body, "next_token", None)
        if not token:
            return


def _numbered(fetch: Any, wrap: Any, page_size: int) -> Iterator[Any]:
    """Walk PageNumber/PageSize pages until a short page."""
    page = 1
    while True:
        items = wrap(fetch(page)) or []
        yield from items
        if len(items) < page_size:
            return
        page += 1


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def read(cloud: Cloud, region: str, vpc_id: str | None = None, tags: dict[str, str] | None = None,
         instance_ids: list[str] | None = None) -> Inventory:
    inv = Inventory(region)
    tag_filter = [ecs.DescribeInstancesRequestTag(key=k, value=v) for k, v in (tags or {}).items()] or None

    def instances_page(token: str | None) -> Any:
        return cloud.ecs("DescribeInstances", ecs.DescribeInstancesRequest(
            region_id=region, vpc_id=vpc_id, tag=tag_filter, max_results=100, next_token=token))

    if instance_ids:
        for chunk in _chunks(instance_ids, 100):
            body = cloud.ecs("DescribeInstances", ecs.DescribeInstancesRequest(
                region_id=region, instance_ids=json.dumps(chunk), vpc_id=vpc_id, tag=tag_filter, max_results=100))
            for i in body.instances.instance or []:
                inv.instances[i.instance_id] = Instance.from_sdk(i)
    else:
        for i in _pages(instances_page, lambda b: b.instances.instance if b.instances else []):
            inv.instances[i.instance_id] = Instance.from_sdk(i)
    vpc_ids = sorted({i.vpc_id for i in inv.instances.values() if i.vpc_id} | ({vpc_id} if vpc_id else set()))
    _read_network(cloud, inv, region, vpc_ids)
    _read_nics(cloud, inv, region, vpc_ids)
    _read_eips(cloud, inv, region)
    _read_types(cloud, inv)
    _read_security_groups(cloud, inv, region)
    return inv


def _read_network(cloud: Cloud, inv: Inventory, region: str, vpc_ids: list[str]) -> None:
    for chunk in _chunks(vpc_ids, 20):
        body = cloud.vpc("DescribeVpcs", vpc.DescribeVpcsRequest(region_id=region, vpc_id=",".join(chunk),
                                                                  page_size=50))
        for v in body.vpcs.vpc or []:
            tables = v.router_table_ids.router_table_ids if v.router_table_ids else []
            inv.vpc_route_tables[v.vpc_id] = (tables or [""])[0]
    for vid in vpc_ids:
        for s in _numbered(lambda n, vid=vid: cloud.vpc("DescribeVSwitches", vpc.DescribeVSwitchesRequest(
                region_id=region, vpc_id=vid, page_size=50, page_number=n)),
                lambda b: b.v_switches.v_switch if b.v_switches else [], 50):
            rt = s.route_table.route_table_id if s.route_table else ""
            inv.vswitches[s.v_switch_id] = VSwitch(s.v_switch_id, s.vpc_id, s.zone_id, s.cidr_block,
                                                   int(s.available_ip_address_count or 0),
                                                   rt or inv.vpc_route_tables.get(vid, ""))
        for n in _numbered(lambda p, vid=vid: cloud.vpc("DescribeNatGateways", vpc.DescribeNatGatewaysRequest(
                region_id=region, vpc_id=vid, page_size=50, page_number=p)),
                lambda b: b.nat_gateways.nat_gateway if b.nat_gateways else [], 50):
            ips = [x.ip_address for x in (n.ip_lists.ip_list if n.ip_lists and n.ip_lists.ip_list else [])]
            stb = (n.snat_table_ids.snat_table_id or [""])[0] if n.snat_table_ids else ""
            inv.nats[n.nat_gateway_id] = Nat(n.nat_gateway_id, n.vpc_id, n.status, stb, ips)
    for nat in inv.nats.values():
        if not nat.snat_table_id:
            continue
        for e in _numbered(lambda p, nat=nat: cloud.vpc(
                "DescribeSnatTableEntries", vpc.DescribeSnatTableEntriesRequest(
                    region_id=region, snat_table_id=nat.snat_table_id, page_size=50, page_number=p)),
                lambda b: b.snat_table_entries.snat_table_entry if b.snat_table_entries else [], 50):
            inv.snats.append(Snat(e.snat_entry_id, e.nat_gateway_id, [x for x in (e.snat_ip or "").split(",") if x],
                                  e.source_vswitch_id or "", e.source_cidr or "", e.status or ""))
    for table in sorted({s.route_table_id for s in inv.vswitches.values() if s.route_table_id}):
        inv.routes[table] = [
            Route(table, r.destination_cidr_block, (r.next_hops.next_hop[0].next_hop_type if r.next_hops and
                                                    r.next_hops.next_hop else ""),
                  (r.next_hops.next_hop[0].next_hop_id if r.next_hops and r.next_hops.next_hop else ""), r.status)
            for r in _pages(lambda t, table=table: cloud.vpc(
                "DescribeRouteEntryList", vpc.DescribeRouteEntryListRequest(
                    region_id=region, route_table_id=table, max_result=100, next_token=t)),
                lambda b: b.route_entrys.route_entry if b.route_entrys else [])]


def _read_nics(cloud: Cloud, inv: Inventory, region: str, vpc_ids: list[str]) -> None:
    for vid in vpc_ids:
        for n in _pages(lambda t, vid=vid: cloud.ecs("DescribeNetworkInterfaces", ecs.DescribeNetworkInterfacesRequest(
                region_id=region, vpc_id=vid, max_results=500, next_token=t)),
                lambda b: b.network_interface_sets.network_interface_set if b.network_interface_sets else []):
            inv.nics[n.network_interface_id] = nic_from_sdk(n)
    # secondary ENIs appear on the instance only once attached; the ENI table knows them all
    for nic in inv.nics.values():
        inst = inv.instances.get(nic.instance_id)
        if inst is not None and nic.eni_id not in inst.nic_ids:
            inst.nic_ids.append(nic.eni_id)


def nic_from_sdk(n: Any) -> Nic:
    assoc = n.associated_public_ip
    return Nic(eni_id=n.network_interface_id, mac=(n.mac_address or "").lower(), ip=n.private_ip_address or "",
               eni_type=n.type or "", status=n.status or "", instance_id=n.instance_id or "",
               vswitch_id=n.v_switch_id or "", eip_allocation_id=(assoc.allocation_id if assoc else "") or "",
               eip_ip=(assoc.public_ip_address if assoc else "") or "",
               tags={t.tag_key: t.tag_value for t in (n.tags.tag if n.tags and n.tags.tag else [])})


def eip_from_sdk(e: Any) -> Eip:
    return Eip(e.allocation_id, e.ip_address, e.status or "", e.instance_type or "", e.instance_id or "",
               e.private_ip_address or "", e.mode or "", e.charge_type or "",
               {t.key: t.value for t in (e.tags.tag if e.tags and e.tags.tag else [])})


def _read_eips(cloud: Cloud, inv: Inventory, region: str) -> None:
    for e in _numbered(lambda p: cloud.vpc("DescribeEipAddresses", vpc.DescribeEipAddressesRequest(
            region_id=region, page_size=100, page_number=p)),
            lambda b: b.eip_addresses.eip_address if b.eip_addresses else [], 100):
        inv.eips[e.allocation_id] = eip_from_sdk(e)


def _read_types(cloud: Cloud, inv: Inventory) -> None:
    types = sorted({i.instance_type for i in inv.instances.values() if i.instance_type})
    for chunk in _chunks(types, 10):
        body = cloud.ecs("DescribeInstanceTypes", ecs.DescribeInstanceTypesRequest(instance_types=chunk))
        for t in body.instance_types.instance_type or []:
            inv.eni_quota[t.instance_type_id] = int(t.eni_quantity or 0)


def _read_security_groups(cloud: Cloud, inv: Inventory, region: str) -> None:
    groups = sorted({g for i in inv.instances.values() for g in i.security_group_ids})
    for g in groups:
        body = cloud.ecs("DescribeSecurityGroupAttribute", ecs.DescribeSecurityGroupAttributeRequest(
            region_id=region, security_group_id=g, direction="ingress"))
        inv.sg_rules[g] = [{"protocol": (p.ip_protocol or "").lower(), "ports": p.port_range or "",
                            "source": p.source_cidr_ip or "", "policy": (p.policy or "accept").lower(),
                            "priority": p.priority or "1"}
                           for p in (body.permissions.permission if body.permissions else []) or []]


def read_assistant(cloud: Cloud, inv: Inventory, instance_ids: list[str]) -> None:
    """Cloud Assistant heartbeat for the instances that need a guest step (≤ 50 per call)."""
    for chunk in _chunks(instance_ids, 50):
        body = cloud.ecs("DescribeCloudAssistantStatus", ecs.DescribeCloudAssistantStatusRequest(
            region_id=inv.region, instance_id=chunk))
        for s in (body.instance_cloud_assistant_status_set.instance_cloud_assistant_status
                  if body.instance_cloud_assistant_status_set else []) or []:
            inv.assistant[s.instance_id] = str(s.cloud_assistant_status).lower() == "true"
