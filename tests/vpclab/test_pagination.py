"""Pagination across pages, each API in its own style (research/aliyun-api.md §1, "Pagination summary").

* ECS DescribeInstances / DescribeNetworkInterfaces: NextToken + MaxResults, or the deprecated
  PageNumber + PageSize;
* VPC DescribeVpcs / DescribeVSwitches (PageSize ≤ 50) and DescribeEipAddresses (PageSize ≤ 100);
* VPC DescribeRouteEntryList: NextToken + the singular ``MaxResult``;
* ECS and VPC ListTagResources: NextToken.

Walks every page through the SDK and checks that nothing is repeated or skipped, also when a
resource is deleted between two pages.  Many resources are made at once by a scenario dict with
``count:`` on instances.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as em
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_vpc20160428 import models as vm

from vpclab import Lab

from .conftest import Clients
from .world_builder import REGION

ZONE = "cn-hangzhou-h"


def fleet(count: int, tags: dict[str, str] | None = None, nat: bool = False) -> dict[str, Any]:
    """One VPC with ``count`` instances named n-01, n-02, ... (and optionally a NAT gateway)."""
    vpc: dict[str, Any] = {
        "name": "vpc-pg", "cidr": "10.0.0.0/16",
        "vswitches": [{"name": "vsw", "zone": ZONE, "cidr": "10.0.0.0/20"},
                      {"name": "vsw-nat", "zone": ZONE, "cidr": "10.0.100.0/24"}],
        "security_groups": [{"name": "sg"}],
        "instances": [{"name": "n", "vswitch": "vsw", "security_groups": ["sg"], "count": count,
                       "tags": tags or {}}],
    }
    if nat:
        vpc["nat_gateways"] = [{"name": "ngw", "vswitch": "vsw-nat"}]
    return {"region": REGION, "vpcs": [vpc]}


def many_vpcs(n: int) -> dict[str, Any]:
    return {"region": REGION, "vpcs": [
        {"name": f"vpc-{i:02d}", "cidr": f"10.{i}.0.0/16",
         "vswitches": [{"name": f"vsw-{i:02d}", "zone": ZONE, "cidr": f"10.{i}.1.0/24"}]}
        for i in range(n)]}


@pytest.fixture
def lab25() -> Iterator[Clients]:
    with Lab(fleet(25, tags={"team": "pg", "env": "test"})) as lab:
        yield Clients(lab)


def error_of(fn: Callable[[], Any]) -> ClientException:
    with pytest.raises(ClientException) as ei:
        fn()
    return ei.value


def walk(fetch: Callable[[str | None], tuple[list[Any], str]], limit: int = 50) -> list[list[Any]]:
    """Follow NextToken until it is empty; returns the pages."""
    pages: list[list[Any]] = []
    token: str | None = None
    for _ in range(limit):
        items, token = fetch(token)
        pages.append(items)
        if not token:
            return pages
    raise AssertionError("NextToken never became empty")


def no_repeats(pages: list[list[Any]]) -> list[Any]:
    flat = [x for p in pages for x in p]
    assert len(flat) == len(set(flat)), f"items repeated across pages: {pages}"
    return flat


# --- ECS DescribeInstances ------------------------------------------------------------------------

def instances_page(c: Clients, **kw: Any) -> Any:
    return c.ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, **kw)).body


def instance_ids(body: Any) -> list[str]:
    return [i.instance_id for i in body.instances.instance]


def test_describe_instances_next_token_walks_10_10_5(lab25: Clients) -> None:
    c = lab25
    expected = set(c.lab.ids["instances"].values())
    assert len(expected) == 25
    tokens: list[str] = []

    def fetch(token: str | None) -> tuple[list[str], str]:
        body = instances_page(c, max_results=10, next_token=token)
        tokens.append(body.next_token)
        return instance_ids(body), body.next_token

    pages = walk(fetch)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert tokens[-1] == "" and all(tokens[:-1])
    assert set(no_repeats(pages)) == expected


def test_describe_instances_exact_multiple_has_no_empty_trailing_page(lab25: Clients) -> None:
    c = lab25
    # n-10 .. n-19: exactly one full page
    body = instances_page(c, max_results=10, instance_name="n-1*")
    assert len(instance_ids(body)) == 10
    assert body.next_token == ""


def test_describe_instances_page_number_and_page_size(lab25: Clients) -> None:
    c = lab25
    pages = []
    for number in (1, 2, 3, 4):
        body = instances_page(c, page_number=number, page_size=10)
        assert (body.total_count, body.page_number, body.page_size) == (25, number, 10)
        pages.append(instance_ids(body))
    assert [len(p) for p in pages] == [10, 10, 5, 0]
    assert set(no_repeats(pages)) == set(c.lab.ids["instances"].values())
    # the default page size is 10
    body = instances_page(c)
    assert (len(instance_ids(body)), body.total_count, body.page_size) == (10, 25, 10)
    assert (body.next_token or "") == ""


def test_describe_instances_page_size_above_100_is_refused(lab25: Clients) -> None:
    e = error_of(lambda: instances_page(lab25, page_size=101))
    assert e.status_code == 400
    assert len(instance_ids(instances_page(lab25, page_size=100))) == 25


def test_describe_instances_max_results_below_10_means_10(lab25: Clients) -> None:
    # SDK field doc: "If you do not set this parameter or set it to a value less than 10, the default value is
    # 10"; aliyun-api.md pagination table: "MaxResults 1-100, <10→10, >100→100"
    body = instances_page(lab25, max_results=5)
    assert len(instance_ids(body)) == 10


def test_max_results_above_the_maximum_is_clamped() -> None:
    with Lab(fleet(105)) as lab:
        c = Clients(lab)
        # DescribeInstances: >100 → 100
        body = instances_page(c, max_results=1000)
        assert len(instance_ids(body)) == 100 and body.next_token
        rest = instances_page(c, max_results=1000, next_token=body.next_token)
        assert len(instance_ids(rest)) == 5 and rest.next_token == ""
        assert set(instance_ids(body)) | set(instance_ids(rest)) == set(lab.ids["instances"].values())
        # DescribeNetworkInterfaces: 10..500, >500 → 500 (all 105 primary ENIs fit in one page)
        enis = enis_page(c, max_results=100000)
        assert len(eni_ids(enis)) == 105 and enis.next_token == ""


# --- ECS DescribeNetworkInterfaces -----------------------------------------------------------------

def enis_page(c: Clients, **kw: Any) -> Any:
    return c.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(region_id=REGION, **kw)).body


def eni_ids(body: Any) -> list[str]:
    return [e.network_interface_id for e in body.network_interface_sets.network_interface_set]


def test_describe_network_interfaces_next_token_and_min_10(lab25: Clients) -> None:
    c = lab25

    def fetch(token: str | None) -> tuple[list[str], str]:
        body = enis_page(c, max_results=10, next_token=token)
        return eni_ids(body), body.next_token

    pages = walk(fetch)
    assert [len(p) for p in pages] == [10, 10, 5]
    flat = no_repeats(pages)
    everyone = enis_page(c, page_size=100)
    assert everyone.total_count == 25 and set(flat) == set(eni_ids(everyone))
    # MaxResults is 10 to 500; a smaller value means 10 (SDK field doc)
    assert len(eni_ids(enis_page(c, max_results=3))) == 10
    # page numbers too
    pages = [eni_ids(enis_page(c, page_number=n, page_size=10)) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert set(no_repeats(pages)) == set(flat)


# --- VPC PageNumber/PageSize -------------------------------------------------------------------------

def test_describe_vpcs_and_vswitches_page_size_max_50() -> None:
    with Lab(many_vpcs(12)) as lab:
        c = Clients(lab)
        vpcs = [c.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION, page_number=n, page_size=5)).body
                for n in (1, 2, 3)]
        assert [len(b.vpcs.vpc) for b in vpcs] == [5, 5, 2]
        assert all((b.total_count, b.page_size) == (12, 5) for b in vpcs)
        assert [b.page_number for b in vpcs] == [1, 2, 3]
        assert set(no_repeats([[v.vpc_id for v in b.vpcs.vpc] for b in vpcs])) == set(lab.ids["vpcs"].values())

        vsws = [c.vpc.describe_vswitches(vm.DescribeVSwitchesRequest(region_id=REGION, page_number=n,
                                                                      page_size=5)).body for n in (1, 2, 3)]
        assert [len(b.v_switches.v_switch) for b in vsws] == [5, 5, 2]
        assert all(b.total_count == 12 for b in vsws)
        assert set(no_repeats([[v.v_switch_id for v in b.v_switches.v_switch] for b in vsws])) == \
            set(lab.ids["vswitches"].values())

        # default page size 10; 50 is the maximum; 51 is refused
        assert len(c.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION)).body.vpcs.vpc) == 10
        assert len(c.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION, page_size=50)).body.vpcs.vpc) == 12
        for call in (lambda: c.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION, page_size=51)),
                     lambda: c.vpc.describe_vswitches(vm.DescribeVSwitchesRequest(region_id=REGION, page_size=51))):
            e = error_of(call)
            assert e.status_code == 400, e.code


def test_describe_eip_addresses_page_size_up_to_100() -> None:
    with Lab({"region": REGION, "eips": [{"name": f"e{i:03d}"} for i in range(105)]}) as lab:
        c = Clients(lab)

        def page(n: int, size: int) -> Any:
            return c.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
                region_id=REGION, page_number=n, page_size=size)).body

        first, second = page(1, 100), page(2, 100)
        assert (len(first.eip_addresses.eip_address), len(second.eip_addresses.eip_address)) == (100, 5)
        assert first.total_count == 105 and first.page_size == 100
        seen = no_repeats([[e.allocation_id for e in b.eip_addresses.eip_address] for b in (first, second)])
        assert set(seen) == set(lab.ids["eips"].values())
        e = error_of(lambda: page(1, 101))
        assert e.status_code == 400


# --- VPC DescribeRouteEntryList: NextToken + MaxResult (singular) ------------------------------------

def test_describe_route_entry_list_max_result_and_next_token() -> None:
    with Lab(fleet(1, nat=True)) as lab:
        c = Clients(lab)
        vpc = c.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION)).body.vpcs.vpc[0]
        rt = vpc.router_table_ids.router_table_ids[0]
        hop = lab.ids["instances"]["n"]
        for i in range(24):
            c.vpc.create_route_entry(vm.CreateRouteEntryRequest(
                region_id=REGION, route_table_id=rt, destination_cidr_block=f"172.16.{i}.0/24",
                next_hop_type="Instance", next_hop_id=hop))

        def fetch(token: str | None, size: int = 10) -> tuple[list[str], str]:
            body = c.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
                region_id=REGION, route_table_id=rt, max_result=size, next_token=token)).body
            assert body.total_count == 25
            return [e.route_entry_id for e in body.route_entrys.route_entry], body.next_token

        pages = walk(fetch)
        assert [len(p) for p in pages] == [10, 10, 5]
        flat = no_repeats(pages)
        assert len(flat) == 25
        # default 10; range 1..100
        body = c.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(region_id=REGION,
                                                                                route_table_id=rt)).body
        assert len(body.route_entrys.route_entry) == 10 and body.next_token
        assert len(fetch(None, 100)[0]) == 25
        assert len(fetch(None, 1)[0]) == 1
        for bad in (0, 101):
            assert error_of(lambda bad=bad: fetch(None, bad)).status_code == 400


# --- ListTagResources (ECS and VPC) ----------------------------------------------------------------

def ecs_tags_page(c: Clients, token: str | None) -> tuple[list[tuple[str, str]], str]:
    body = c.ecs.list_tag_resources(em.ListTagResourcesRequest(
        region_id=REGION, resource_type="instance", next_token=token,
        tag=[em.ListTagResourcesRequestTag(key="team")])).body
    return [(r.resource_id, r.tag_key) for r in body.tag_resources.tag_resource], body.next_token


def test_ecs_list_tag_resources_next_token_walk() -> None:
    with Lab(fleet(60, tags={"team": "pg", "env": "test"})) as lab:
        c = Clients(lab)
        pages = walk(lambda t: ecs_tags_page(c, t))
        assert [len(p) for p in pages] == [50, 50, 20]
        flat = no_repeats(pages)
        assert set(flat) == {(i, k) for i in lab.ids["instances"].values() for k in ("team", "env")}


def tag_vpcs(c: Clients, vpc_ids: list[str]) -> None:
    for i in range(0, len(vpc_ids), 20):
        c.vpc.tag_resources(vm.TagResourcesRequest(
            region_id=REGION, resource_type="VPC", resource_id=vpc_ids[i:i + 20],
            tag=[vm.TagResourcesRequestTag(key="team", value="pg"), vm.TagResourcesRequestTag(key="env", value="t")]))


def vpc_tags_page(c: Clients, token: str | None, size: int | None = 10) -> tuple[list[tuple[str, str]], str]:
    body = c.vpc.list_tag_resources(vm.ListTagResourcesRequest(
        region_id=REGION, resource_type="VPC", next_token=token, max_results=size,
        tag=[vm.ListTagResourcesRequestTag(key="team")])).body
    return [(r.resource_id, r.tag_key) for r in body.tag_resources.tag_resource], body.next_token


def test_vpc_list_tag_resources_next_token_and_max_results() -> None:
    with Lab(many_vpcs(12)) as lab:
        c = Clients(lab)
        vpc_ids = list(lab.ids["vpcs"].values())
        tag_vpcs(c, vpc_ids)
        pages = walk(lambda t: vpc_tags_page(c, t))
        assert [len(p) for p in pages] == [10, 10, 4]
        assert set(no_repeats(pages)) == {(v, k) for v in vpc_ids for k in ("team", "env")}
        # default 50 (one page here); 1..50
        rows, token = vpc_tags_page(c, None, None)
        assert len(rows) == 24 and token == ""
        assert error_of(lambda: vpc_tags_page(c, None, 51)).status_code == 400


# --- malformed tokens ----------------------------------------------------------------------------------

BAD_TOKENS = ["not-a-token!!", "djE6YWJj", "Zm9vOjE"]  # junk; base64 "v1:abc"; base64 "foo:1"


@pytest.mark.parametrize("bad", BAD_TOKENS)
@pytest.mark.parametrize("api", ["DescribeInstances", "DescribeNetworkInterfaces", "DescribeRouteEntryList",
                                 "ecs:ListTagResources", "vpc:ListTagResources"])
def test_malformed_next_token_is_an_error(api: str, bad: str) -> None:
    with Lab(fleet(3, tags={"team": "pg"}, nat=True)) as lab:
        c = Clients(lab)
        vpc_id = lab.ids["vpcs"]["vpc-pg"]
        rt = c.vpc.describe_vpcs(vm.DescribeVpcsRequest(
            region_id=REGION, vpc_id=vpc_id)).body.vpcs.vpc[0].router_table_ids.router_table_ids[0]
        calls: dict[str, Callable[[], Any]] = {
            "DescribeInstances": lambda: instances_page(c, next_token=bad),
            "DescribeNetworkInterfaces": lambda: enis_page(c, next_token=bad),
            "DescribeRouteEntryList": lambda: c.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
                region_id=REGION, route_table_id=rt, next_token=bad)),
            "ecs:ListTagResources": lambda: ecs_tags_page(c, bad),
            "vpc:ListTagResources": lambda: vpc_tags_page(c, bad),
        }
        e = error_of(calls[api])
        assert e.status_code == 400
        assert "NextToken" in e.code or "NextToken" in (e.message or "")


# --- deletion between pages ---------------------------------------------------------------------------

def delete_instance(c: Clients, iid: str) -> None:
    c.ecs.delete_instance(em.DeleteInstanceRequest(instance_id=iid, force=True))


def test_describe_instances_no_repeat_or_skip_when_deleting_between_pages(lab25: Clients) -> None:
    c = lab25
    everyone = set(c.lab.ids["instances"].values())

    def fetch(token: str | None) -> tuple[list[str], str]:
        body = instances_page(c, max_results=10, next_token=token)
        return instance_ids(body), body.next_token

    page1, token = fetch(None)
    gone_later = fetch(token)[0][4]   # on page 2, not yet returned when it is deleted
    delete_instance(c, page1[0])      # already returned
    delete_instance(c, page1[-1])     # already returned, and the item the NextToken points after
    delete_instance(c, gone_later)
    pages = [page1, *walk(lambda t: fetch(t or token))]
    assert [len(p) for p in pages] == [10, 10, 4]
    flat = no_repeats(pages)
    assert set(flat) == everyone - {gone_later}


def test_describe_network_interfaces_no_repeat_or_skip_when_deleting_between_pages(lab25: Clients) -> None:
    c = lab25
    ids = c.lab.ids
    made = [c.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=ids["vswitches"]["vsw"], security_group_id=ids["security_groups"]["sg"]
    )).body.network_interface_id for _ in range(25)]

    def fetch(token: str | None) -> tuple[list[str], str]:
        body = enis_page(c, type="Secondary", max_results=10, next_token=token)
        return eni_ids(body), body.next_token

    page1, token = fetch(None)
    assert page1 == made[:10]
    for eni_id in (made[0], made[9], made[17]):  # made[9] is the one the NextToken points after
        c.ecs.delete_network_interface(em.DeleteNetworkInterfaceRequest(region_id=REGION,
                                                                         network_interface_id=eni_id))
    pages = [page1, *walk(lambda t: fetch(t or token))]
    flat = no_repeats(pages)
    assert set(flat) == set(made) - {made[17]}


def test_route_entries_no_repeat_or_skip_when_deleting_between_pages() -> None:
    with Lab(fleet(1)) as lab:
        c = Clients(lab)
        rt = c.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION)).body.vpcs.vpc[0] \
            .router_table_ids.router_table_ids[0]
        made = [c.vpc.create_route_entry(vm.CreateRouteEntryRequest(
            region_id=REGION, route_table_id=rt, destination_cidr_block=f"172.16.{i}.0/24",
            next_hop_type="Instance", next_hop_id=lab.ids["instances"]["n"])).body.route_entry_id for i in range(15)]

        def fetch(token: str | None) -> tuple[list[str], str]:
            body = c.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
                region_id=REGION, route_table_id=rt, max_result=5, next_token=token)).body
            return [e.route_entry_id for e in body.route_entrys.route_entry], body.next_token

        page1, token = fetch(None)
        assert page1 == made[:5]
        for rte in (made[0], made[9]):
            c.vpc.delete_route_entry(vm.DeleteRouteEntryRequest(region_id=REGION, route_entry_id=rte))
        pages = [page1, *walk(lambda t: fetch(t or token))]
        assert set(no_repeats(pages)) == set(made) - {made[9]}


def test_ecs_list_tag_resources_no_skip_when_deleting_between_pages() -> None:
    with Lab(fleet(60, tags={"team": "pg", "env": "test"})) as lab:
        c = Clients(lab)
        everyone = {(i, k) for i in lab.ids["instances"].values() for k in ("team", "env")}
        page1, token = ecs_tags_page(c, None)
        delete_instance(c, page1[0][0])  # a resource whose rows were already returned
        pages = [page1, *walk(lambda t: ecs_tags_page(c, t or token))]
        flat = no_repeats(pages)
        assert set(flat) == everyone


def test_vpc_list_tag_resources_no_skip_when_deleting_between_pages() -> None:
    with Lab({"region": REGION, "eips": [{"name": f"e{i:02d}"} for i in range(12)]}) as lab:
        c = Clients(lab)
        eip_ids = list(lab.ids["eips"].values())
        c.vpc.tag_resources(vm.TagResourcesRequest(
            region_id=REGION, resource_type="EIP", resource_id=eip_ids,
            tag=[vm.TagResourcesRequestTag(key="team", value="pg"), vm.TagResourcesRequestTag(key="env", value="t")]))

        def fetch(token: str | None) -> tuple[list[tuple[str, str]], str]:
            body = c.vpc.list_tag_resources(vm.ListTagResourcesRequest(
                region_id=REGION, resource_type="EIP", next_token=token, max_results=10,
                tag=[vm.ListTagResourcesRequestTag(key="team")])).body
            return [(r.resource_id, r.tag_key) for r in body.tag_resources.tag_resource], body.next_token

        page1, token = fetch(None)
        c.vpc.release_eip_address(vm.ReleaseEipAddressRequest(region_id=REGION, allocation_id=page1[0][0]))
        pages = [page1, *walk(lambda t: fetch(t or token))]
        assert set(no_repeats(pages)) == {(e, k) for e in eip_ids for k in ("team", "env")}


def test_instance_ids_filter_pages_too(lab25: Clients) -> None:
    c = lab25
    wanted = sorted(c.lab.ids["instances"].values())[:15]
    pages = walk(lambda t: (instance_ids(b := instances_page(c, instance_ids=json.dumps(wanted), max_results=10,
                                                             next_token=t)), b.next_token))
    assert [len(p) for p in pages] == [10, 5]
    assert set(no_repeats(pages)) == set(wanted)
