"""Scenario files: the seed loads with what its comments promise, and a bad scenario fails with a
message that names the file, the field path and the problem (through ``vpclab.scenario``'s
``load_file``/``parse``/``build`` and through ``Lab(path)``).  What a loaded scenario contains is
checked through the official SDK only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from alibabacloud_ecs20140526 import models as em
from alibabacloud_vpc20160428 import models as vm

from vpclab import Lab
from vpclab.catalogue import Catalogue
from vpclab.scenario import ScenarioError, build, load_file, parse
from vpclab.world import World

from .conftest import SEED, Clients
from .world_builder import REGION

ZONE = "cn-hangzhou-h"


def instances_by_name(c: Clients) -> dict[str, Any]:
    body = c.ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, page_size=100)).body
    return {i.instance_name: i for i in body.instances.instance}


def public_ips(inst: Any) -> list[str]:
    return list(inst.public_ip_address.ip_address or [])


def eip_ip(inst: Any) -> str:
    return (inst.eip_address.ip_address or "") if inst.eip_address else ""


def route_table(c: Clients, vpc_id: str) -> str:
    vpc = c.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION, vpc_id=vpc_id)).body.vpcs.vpc[0]
    return vpc.router_table_ids.router_table_ids[0]


def default_routes(c: Clients, vpc_id: str) -> list[Any]:
    return c.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
        region_id=REGION, route_table_id=route_table(c, vpc_id),
        destination_cidr_block="0.0.0.0/0")).body.route_entrys.route_entry


# --- the seed ------------------------------------------------------------------------------------------

def test_seed_has_what_its_comments_say(seed: Clients) -> None:
    c = seed
    ids = c.lab.ids
    insts = instances_by_name(c)
    assert sorted(insts) == sorted(["web-1", "app-1", "app-2", "billing-1", "web-2", "small-1", "win-1"])
    assert all(i.status == "Running" for i in insts.values())
    assert {n: i.instance_id for n, i in insts.items()} == ids["instances"]

    web1 = insts["web-1"]
    assert web1.vpc_attributes.private_ip_address.ip_address == ["192.168.3.10"]
    assert public_ips(web1) == ["203.0.113.10"] and eip_ip(web1) == ""
    assert web1.internet_max_bandwidth_out == 5 and web1.instance_charge_type == "PostPaid"
    for name in ("app-1", "app-2"):
        assert public_ips(insts[name]) == [] and eip_ip(insts[name]) == ""
        assert insts[name].internet_max_bandwidth_out == 0
    assert insts["app-1"].vpc_attributes.private_ip_address.ip_address == ["192.168.3.20"]
    assert insts["app-2"].vpc_attributes.private_ip_address.ip_address == ["192.168.3.21"]

    billing = insts["billing-1"]
    assert (billing.instance_charge_type, billing.internet_charge_type) == ("PrePaid", "PayByBandwidth")
    assert public_ips(billing) == ["203.0.113.11"]

    web2 = insts["web-2"]
    assert public_ips(web2) == [] and eip_ip(web2) == "203.0.113.12"
    eip = c.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
        region_id=REGION, eip_address="203.0.113.12")).body.eip_addresses.eip_address
    assert len(eip) == 1
    assert (eip[0].status, eip[0].instance_type, eip[0].instance_id) == ("InUse", "EcsInstance", web2.instance_id)
    assert web2.eip_address.allocation_id == eip[0].allocation_id

    assert insts["small-1"].instance_type == "ecs.t6-c1m1.large" and public_ips(insts["small-1"]) == ["203.0.113.13"]
    assert insts["win-1"].ostype == "windows" and public_ips(insts["win-1"]) == ["203.0.113.14"]

    # the NAT gateway: SNAT entry for vsw-app with 203.0.113.100, and the 0.0.0.0/0 route to it
    ngw_id = ids["nat_gateways"]["ngw-seed"]
    ngw = c.vpc.describe_nat_gateways(vm.DescribeNatGatewaysRequest(
        region_id=REGION, nat_gateway_id=ngw_id)).body.nat_gateways.nat_gateway[0]
    assert ngw.status == "Available"
    assert [ip.ip_address for ip in ngw.ip_lists.ip_list] == ["203.0.113.100"]
    entries = c.vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(
        region_id=REGION, nat_gateway_id=ngw_id)).body.snat_table_entries.snat_table_entry
    assert len(entries) == 1
    e = entries[0]
    assert (e.source_vswitch_id, e.source_cidr, e.snat_ip, e.status) == \
        (ids["vswitches"]["vsw-app"], "192.168.3.0/24", "203.0.113.100", "Available")
    routes = default_routes(c, ids["vpcs"]["vpc-seed"])
    assert len(routes) == 1 and routes[0].status == "Available"
    hop = routes[0].next_hops.next_hop[0]
    assert (hop.next_hop_type, hop.next_hop_id) == ("NatGateway", ngw_id)


def test_seed_is_fully_built_even_with_the_realistic_profile() -> None:
    # the loader completes every transition it starts, whatever the latency profile says
    with Lab(SEED, latency="realistic") as lab:
        c = Clients(lab)
        insts = instances_by_name(c)
        assert len(insts) == 7 and {i.status for i in insts.values()} == {"Running"}
        assert eip_ip(insts["web-2"]) == "203.0.113.12"
        routes = default_routes(c, lab.ids["vpcs"]["vpc-seed"])
        assert [r.status for r in routes] == ["Available"]
        entries = c.vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(
            region_id=REGION, nat_gateway_id=lab.ids["nat_gateways"]["ngw-seed"])).body
        assert [s.status for s in entries.snat_table_entries.snat_table_entry] == ["Available"]


# --- building blocks ----------------------------------------------------------------------------------

def scenario(**instance: Any) -> dict[str, Any]:
    """A small valid scenario; keyword arguments replace fields of its second instance."""
    data: dict[str, Any] = {
        "region": REGION,
        "vpcs": [{
            "name": "vpc-t", "cidr": "192.168.0.0/16",
            "vswitches": [{"name": "vsw-app", "zone": ZONE, "cidr": "192.168.3.0/24"},
                          {"name": "vsw-nat", "zone": ZONE, "cidr": "192.168.100.0/24"}],
            "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
            "nat_gateways": [{"name": "ngw", "vswitch": "vsw-nat", "eips": [{"ip": "203.0.113.100"}],
                              "snat": [{"vswitch": "vsw-app"}]}],
            "instances": [
                {"name": "first", "vswitch": "vsw-app", "security_groups": ["sg"], "private_ip": "192.168.3.10"},
                {"name": "second", "vswitch": "vsw-app", "security_groups": ["sg"], "private_ip": "192.168.3.11"},
            ],
        }],
    }
    data["vpcs"][0]["instances"][1].update(instance)
    return data


def write(tmp_path: Path, data: Any, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def scenario_error(fn: Callable[[], Any]) -> str:
    with pytest.raises(ScenarioError) as ei:
        fn()
    return str(ei.value)


def test_the_base_scenario_is_valid(tmp_path: Path) -> None:
    # the control for the error cases below: unchanged, it loads
    path = write(tmp_path, scenario())
    with Lab(path) as lab:
        assert sorted(instances_by_name(Clients(lab))) == ["first", "second"]


# --- errors found while parsing (file, field path, problem) --------------------------------------------

def _unknown_top_level_key() -> dict[str, Any]:
    return {**scenario(), "regoin": "cn-hangzhou"}


def _wrong_type_count() -> dict[str, Any]:
    return scenario(count="many")


def _wrong_type_vpcs() -> dict[str, Any]:
    return {**scenario(), "vpcs": "vpc-t"}


def _missing_security_groups() -> dict[str, Any]:
    data = scenario()
    del data["vpcs"][0]["instances"][1]["security_groups"]
    return data


PARSE_ERRORS = [
    (_unknown_top_level_key, "regoin", "not permitted"),
    (_wrong_type_count, "vpcs[0].instances[1].count", "integer"),
    (_wrong_type_vpcs, "vpcs", "list"),
    (lambda: scenario(private_ip="192.168.3.300"), "vpcs[0].instances[1].private_ip", "192.168.3.300"),
    (lambda: scenario(public_ip="203.0.113"), "vpcs[0].instances[1].public_ip", "203.0.113"),
    (lambda: scenario(charge_type="Monthly"), "vpcs[0].instances[1].charge_type", "PrePaid"),
    (lambda: scenario(unknown_field=1), "vpcs[0].instances[1].unknown_field", "not permitted"),
    (_missing_security_groups, "vpcs[0].instances[1].security_groups", "required"),
]


@pytest.mark.parametrize(("make", "where", "problem"), PARSE_ERRORS,
                         ids=["unknown-top-level-key", "wrong-type-count", "wrong-type-vpcs", "bad-private-ip",
                              "bad-public-ip", "bad-literal", "unknown-instance-field", "missing-field"])
def test_parse_errors_name_file_field_and_problem(tmp_path: Path, make: Callable[[], Any], where: str,
                                                  problem: str) -> None:
    path = write(tmp_path, make())
    for msg in (scenario_error(lambda: load_file(path)), scenario_error(lambda: Lab(path))):
        assert msg.startswith(f"{path}: {where}: "), msg
        assert problem.lower() in msg.lower(), msg
    # parse() on the data itself uses the source name it is given
    msg = scenario_error(lambda: parse(make(), "inline.yaml"))
    assert msg.startswith(f"inline.yaml: {where}: "), msg


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n")
    msg = scenario_error(lambda: load_file(path))
    assert msg.startswith(f"{path}: ") and "mapping" in msg and "list" in msg


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "region: cn-hangzhou\nvpcs: [\n  {name: vpc-t, cidr: 192.168.0.0/16\n")
    for msg in (scenario_error(lambda: load_file(path)), scenario_error(lambda: Lab(path))):
        assert msg.startswith(f"{path}: not valid YAML"), msg


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    for msg in (scenario_error(lambda: load_file(path)), scenario_error(lambda: Lab(path))):
        assert msg.startswith(f"{path}: cannot read"), msg
        assert "No such file" in msg


# --- errors found while building (the operation's own API code, located at the field) -------------------

BUILD_ERRORS = [
    (lambda: scenario(vswitch="vsw-nope"), "vpcs[0].instances[1].vswitch", ["no vSwitch named 'vsw-nope'",
                                                                           "vsw-app"]),
    (lambda: scenario(security_groups=["sg-nope"]), "vpcs[0].instances[1].security_groups",
     ["no security group named 'sg-nope'"]),
    (lambda: scenario(private_ip="192.168.9.10"), "vpcs[0].instances[1]", ["InvalidIp.Address", "192.168.9.10"]),
    (lambda: scenario(private_ip="192.168.3.10"), "vpcs[0].instances[1]", ["InvalidPrivateIpAddress.Duplicated"]),
    (lambda: scenario(private_ip="192.168.3.10", count=3), "vpcs[0].instances[1]", ["count: 1"]),
    (lambda: scenario(type="ecs.nope.large"), "vpcs[0].instances[1]", ["InvalidInstanceType.NotFound"]),
    (lambda: scenario(public_ip="203.0.113.5", eip={"ip": "203.0.113.6"}), "vpcs[0].instances[1]",
     ["not both"]),
    (lambda: {**scenario(), "region": "mars-1"}, "region", ["unknown region 'mars-1'", "cn-hangzhou"]),
]


@pytest.mark.parametrize(("make", "where", "problems"), BUILD_ERRORS,
                         ids=["unknown-vswitch", "unknown-security-group", "ip-outside-vswitch", "duplicate-ip",
                              "count-with-fixed-ip", "unknown-instance-type", "public-ip-and-eip",
                              "unknown-region"])
def test_build_errors_name_file_field_and_problem(tmp_path: Path, make: Callable[[], Any], where: str,
                                                  problems: list[str]) -> None:
    path = write(tmp_path, make())
    sc = load_file(path)  # the schema is fine: the problem is found while building
    msg = scenario_error(lambda: build(World(Catalogue.default()), sc, str(path)))
    assert msg.startswith(f"{path}: {where}: "), msg
    for p in problems:
        assert p in msg, msg
    lab_msg = scenario_error(lambda: Lab(path))
    assert lab_msg.startswith(f"{path}: {where}: "), lab_msg
    # a dict scenario is named <scenario>
    assert scenario_error(lambda: Lab(copy.deepcopy(make()))).startswith(f"<scenario>: {where}: ")


def test_snat_with_both_vswitch_and_cidr_is_refused(tmp_path: Path) -> None:
    data = scenario()
    data["vpcs"][0]["nat_gateways"][0]["snat"] = [{"vswitch": "vsw-app", "cidr": "192.168.3.0/24"}]
    msg = scenario_error(lambda: Lab(write(tmp_path, data)))
    assert "vpcs[0].nat_gateways[0].snat[0]" in msg and "exactly one" in msg


# --- what a scenario builds ---------------------------------------------------------------------------

def test_default_route_false_leaves_no_default_route() -> None:
    with_route = scenario()
    without = scenario()
    without["vpcs"][0]["nat_gateways"][0]["default_route"] = False
    with Lab(with_route) as lab:
        c = Clients(lab)
        routes = default_routes(c, lab.ids["vpcs"]["vpc-t"])
        assert [(r.next_hops.next_hop[0].next_hop_type, r.status) for r in routes] == [("NatGateway", "Available")]
    with Lab(without) as lab:
        c = Clients(lab)
        assert default_routes(c, lab.ids["vpcs"]["vpc-t"]) == []
        all_routes = c.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
            region_id=REGION, route_table_id=route_table(c, lab.ids["vpcs"]["vpc-t"]))).body
        assert all(r.destination_cidr_block != "0.0.0.0/0" for r in all_routes.route_entrys.route_entry)
        # the gateway and its SNAT entry are still there
        ngw_id = lab.ids["nat_gateways"]["ngw"]
        assert c.vpc.describe_nat_gateways(vm.DescribeNatGatewaysRequest(
            region_id=REGION, nat_gateway_id=ngw_id)).body.nat_gateways.nat_gateway[0].status == "Available"
        assert len(c.vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(
            region_id=REGION, nat_gateway_id=ngw_id)).body.snat_table_entries.snat_table_entry) == 1


def test_count_makes_numbered_instances_with_distinct_addresses() -> None:
    data = scenario(name="pool", private_ip=None, count=12, public_ip="auto", tags={"role": "pool"})
    with Lab(data) as lab:
        insts = instances_by_name(Clients(lab))
    pool = {n: i for n, i in insts.items() if n.startswith("pool")}
    assert sorted(pool) == [f"pool-{n:02d}" for n in range(1, 13)]
    privs = [i.vpc_attributes.private_ip_address.ip_address[0] for i in pool.values()]
    pubs = [public_ips(i)[0] for i in pool.values()]
    assert len(set(privs)) == 12 and len(set(pubs)) == 12
    assert all(p.startswith("192.168.3.") for p in privs) and "192.168.3.10" not in privs
    assert all(t.tag_key == "role" and t.tag_value == "pool" for i in pool.values() for t in i.tags.tag)


def test_auto_public_ips_never_take_an_address_the_scenario_names_later() -> None:
    data = scenario(public_ip="203.0.113.1")  # named explicitly by the second instance ...
    data["vpcs"][0]["instances"][0]["public_ip"] = "auto"  # ... after an 'auto' one
    data["eips"] = [{"ip": "203.0.113.2", "name": "spare"}]
    with Lab(data) as lab:
        c = Clients(lab)
        insts = instances_by_name(c)
        assert public_ips(insts["second"]) == ["203.0.113.1"]
        assert public_ips(insts["first"])[0] not in ("203.0.113.1", "203.0.113.2", "203.0.113.100")
        spare = c.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
            region_id=REGION, allocation_id=lab.ids["eips"]["spare"])).body.eip_addresses.eip_address[0]
        assert (spare.ip_address, spare.status) == ("203.0.113.2", "Available")


def test_stopped_status_and_dict_and_yaml_scenarios_agree(tmp_path: Path) -> None:
    data = scenario(status="Stopped", charge_type="PrePaid")
    views = []
    for source in (data, write(tmp_path, data)):
        with Lab(source) as lab:
            insts = instances_by_name(Clients(lab))
            views.append({n: (i.status, i.instance_charge_type, i.vpc_attributes.private_ip_address.ip_address)
                          for n, i in insts.items()})
    assert views[0] == views[1]
    assert views[0]["second"] == ("Stopped", "PrePaid", ["192.168.3.11"])
