"""VPC error matrix: every documented precondition answers with its documented code and HTTP status.

Through the official SDK only (research/aliyun-api.md §1, §4, §10), asserting ``Code`` and HTTP
status exactly, including the real misspellings ``InvalidInstanId.NotFound``,
``IncorretSnatEntryStatus`` and ``InvalidIAssociatedInstanceType.ValueNotSupported``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alibabacloud_vpc20160428 import models as vm

from .error_helpers import Seed, expect_error, seed_clients
from .world_builder import REGION, wait

FAKE_EIP = "eip-bp1doesnotexist0000"
FAKE_INSTANCE = "i-bp1doesnotexist00000"
FAKE_ENI = "eni-bp1doesnotexist0000"
FAKE_NGW = "ngw-bp1doesnotexist0000"
FAKE_TABLE = "stb-bp1doesnotexist0000"
FAKE_VSW = "vsw-bp1doesnotexist0000"
NAT_IP = "203.0.113.100"  # the seed NAT gateway's SNAT EIP


@pytest.fixture
def s() -> Iterator[Seed]:
    """The seed world, instant latency."""
    with seed_clients() as c:
        yield Seed(c)


@pytest.fixture
def slow() -> Iterator[Seed]:
    """The seed world, realistic latency at 0.2× (associate ≈ 0.4 s, SNAT create ≈ 0.6 s)."""
    with seed_clients(latency="realistic", time_scale=0.2) as c:
        yield Seed(c)


@pytest.fixture
def stopping() -> Iterator[tuple[Seed, str]]:
    """app-1 caught in ``Stopping`` (realistic stop ≈ 10 s ± 3 s × 0.1)."""
    with seed_clients(latency="realistic", time_scale=0.1) as c:
        s = Seed(c)
        iid = s.inst["app-1"]
        s.stop(iid)
        assert s.status(iid) == "Stopping"
        yield s, iid


# =================================================================================================
# AssociateEipAddress (§4.5)
# =================================================================================================

def test_associate_unknown_eip(s: Seed) -> None:
    expect_error(lambda: s.associate(FAKE_EIP, s.inst["app-1"]), "InvalidAllocationId.NotFound", 404)


@pytest.mark.parametrize(("instance_id", "instance_type"), [
    (FAKE_INSTANCE, "EcsInstance"),
    (FAKE_ENI, "NetworkInterface"),
    (FAKE_NGW, "Nat"),
])
def test_associate_unknown_instance_real_typo(s: Seed, instance_id: str, instance_type: str) -> None:
    aid, _ = s.allocate()
    kw = {"private_ip_address": "192.168.3.200"} if instance_type == "NetworkInterface" else {}
    e = expect_error(lambda: s.associate(aid, instance_id, instance_type, **kw), "InvalidInstanId.NotFound", 404)
    assert "InvalidInstanceId" not in e.code  # the cloud's own misspelling, kept on purpose
    assert s.eip_status(aid) == "Available"


def test_associate_eip_in_use(s: Seed) -> None:
    aid, _ = s.allocate()
    s.associate(aid, s.inst["app-1"])
    wait(lambda: s.eip_status(aid) == "InUse")
    expect_error(lambda: s.associate(aid, s.inst["app-2"]), "IncorrectEipStatus", 400)
    assert s.eip(aid).instance_id == s.inst["app-1"]


def test_associate_instance_with_fixed_public_ip(s: Seed) -> None:
    aid, _ = s.allocate()
    expect_error(lambda: s.associate(aid, s.inst["web-1"]), "InvalidStatus.InstanceHasBandWidth", 400)
    assert s.eip_status(aid) == "Available"


def test_associate_instance_with_eip(s: Seed) -> None:
    aid, _ = s.allocate()
    expect_error(lambda: s.associate(aid, s.inst["web-2"]), "InvalidAssociation.Duplicated", 400)


def test_associate_eni_without_private_ip(s: Seed) -> None:
    aid, _ = s.allocate()
    eni = s.create_eni()
    expect_error(lambda: s.associate(aid, eni, "NetworkInterface"), "MissingParameter", 400)


def test_associate_eni_foreign_private_ip(s: Seed) -> None:
    aid, _ = s.allocate()
    eni = s.create_eni()
    assert s.eni(eni).private_ip_address != "192.168.3.10"
    expect_error(lambda: s.associate(aid, eni, "NetworkInterface", private_ip_address="192.168.3.10"),
                 "InvalidParameter", 400)
    assert s.eip_status(aid) == "Available"


def test_associate_eni_already_has_eip(s: Seed) -> None:
    eni = s.create_eni()
    ip = s.eni(eni).private_ip_address
    first, _ = s.allocate()
    s.associate(first, eni, "NetworkInterface", private_ip_address=ip)
    wait(lambda: s.eip_status(first) == "InUse")
    second, _ = s.allocate()
    expect_error(lambda: s.associate(second, eni, "NetworkInterface", private_ip_address=ip),
                 "InvalidAssociation.Duplicated", 400)


def test_associate_unsupported_instance_type(s: Seed) -> None:
    aid, _ = s.allocate()
    expect_error(lambda: s.associate(aid, "lb-bp1fake", "SlbInstance"), "InvalidInstanceType.ValueNotSupported", 400)


def test_associate_instance_stopping(stopping: tuple[Seed, str]) -> None:
    s, iid = stopping
    aid, _ = s.allocate()
    expect_error(lambda: s.associate(aid, iid), "IncorrectInstanceStatus", 400)
    assert s.status(iid) == "Stopping"
    assert s.eip_status(aid) == "Available"


# =================================================================================================
# UnassociateEipAddress (§4.6) / ReleaseEipAddress (§4.7)
# =================================================================================================

def test_unassociate_available_eip(s: Seed) -> None:
    aid, _ = s.allocate()
    expect_error(lambda: s.unassociate(aid), "IncorrectEipStatus", 400)


def test_unassociate_unknown_eip(s: Seed) -> None:
    expect_error(lambda: s.unassociate(FAKE_EIP), "InvalidAllocationId.NotFound", 404)


def test_unassociate_wrong_instance(s: Seed) -> None:
    aid = s.eip_of_instance(s.inst["web-2"])
    expect_error(lambda: s.unassociate(aid, instance_id=s.inst["app-1"]), "InvalidBindingStatus", 400)
    expect_error(lambda: s.unassociate(aid, instance_id=FAKE_INSTANCE), "InvalidInstanceId.NotFound", 400)
    assert s.eip_status(aid) == "InUse"


def test_unassociate_wrong_instance_type(s: Seed) -> None:
    aid = s.eip_of_instance(s.inst["web-2"])
    expect_error(lambda: s.unassociate(aid, instance_id=s.inst["web-2"], instance_type="NetworkInterface"),
                 "InvalidInstanceType.ValueNotSupported", 400)
    assert s.eip_status(aid) == "InUse"


def test_unassociate_nat_eip_used_by_snat(s: Seed) -> None:
    aid = s.eip_of_instance(s.ngw)
    expect_error(lambda: s.unassociate(aid, instance_id=s.ngw, instance_type="Nat"),
                 "InvalidIpStatus.HasBeenUsedBySnatTable", 400)


def test_release_in_use(s: Seed) -> None:
    aid = s.eip_of_instance(s.inst["web-2"])
    expect_error(lambda: s.release(aid), "IncorrectEipStatus", 400)
    assert s.eip_status(aid) == "InUse"


def test_release_unknown(s: Seed) -> None:
    expect_error(lambda: s.release(FAKE_EIP), "InvalidAllocationId.NotFound", 404)


def test_release_prepaid(s: Seed) -> None:
    aid, _ = s.allocate(instance_charge_type="PrePaid")
    expect_error(lambda: s.release(aid), "Forbidden.ChargeTypeIsPrepaid", 400)


@pytest.mark.parametrize(("field", "value"), [("bandwidth", "0"), ("bandwidth", "lots"),
                                              ("internet_charge_type", "PayByMood")])
def test_allocate_bad_parameter(s: Seed, field: str, value: str) -> None:
    expect_error(lambda: s.allocate(**{field: value}), "InvalidParameter", 400)


# =================================================================================================
# EIP transitional states (§2, §4.5–4.7): while Associating/Unassociating only queries succeed
# =================================================================================================

def test_eip_associating_refuses_everything_then_settles(slow: Seed) -> None:
    aid, _ = slow.allocate()
    iid = slow.inst["app-1"]
    slow.associate(aid, iid)
    assert slow.eip_status(aid) == "Associating"
    expect_error(lambda: slow.associate(aid, iid), "IncorrectEipStatus", 400)
    expect_error(lambda: slow.associate(aid, slow.inst["app-2"]), "IncorrectEipStatus", 400)
    expect_error(lambda: slow.unassociate(aid), "IncorrectEipStatus", 400)
    expect_error(lambda: slow.release(aid), "IncorrectEipStatus", 400)
    assert slow.eip_status(aid) == "Associating"  # all refusals happened inside the window
    wait(lambda: slow.eip_status(aid) == "InUse", timeout=5)
    assert slow.instance(iid).eip_address.allocation_id == aid


def test_eip_unassociating_refuses_everything_then_settles(slow: Seed) -> None:
    aid, _ = slow.allocate()
    iid = slow.inst["app-1"]
    slow.associate(aid, iid)
    wait(lambda: slow.eip_status(aid) == "InUse", timeout=5)
    slow.unassociate(aid, instance_id=iid)
    assert slow.eip_status(aid) == "Unassociating"
    expect_error(lambda: slow.unassociate(aid, instance_id=iid), "IncorrectEipStatus", 400)
    expect_error(lambda: slow.associate(aid, slow.inst["app-2"]), "IncorrectEipStatus", 400)
    expect_error(lambda: slow.release(aid), "IncorrectEipStatus", 400)
    assert slow.eip_status(aid) == "Unassociating"
    wait(lambda: slow.eip_status(aid) == "Available", timeout=5)
    assert slow.instance(iid).eip_address.allocation_id == ""
    slow.release(aid)  # Available: now it may go


def test_eip_releasing_refuses_associate(slow: Seed) -> None:
    aid, _ = slow.allocate()
    slow.release(aid)
    assert slow.eip_status(aid) == "Releasing"
    expect_error(lambda: slow.associate(aid, slow.inst["app-1"]), "IncorrectEipStatus", 400)
    expect_error(lambda: slow.release(aid), "IncorrectEipStatus", 400)
    wait(lambda: slow.eip(aid) is None, timeout=5)
    expect_error(lambda: slow.release(aid), "InvalidAllocationId.NotFound", 404)


def test_eni_eip_associating_window(slow: Seed) -> None:
    eni = slow.create_eni()
    ip = slow.eni(eni).private_ip_address
    aid, _ = slow.allocate()
    slow.associate(aid, eni, "NetworkInterface", private_ip_address=ip)
    assert slow.eip_status(aid) == "Associating"
    expect_error(lambda: slow.unassociate(aid, instance_id=eni, instance_type="NetworkInterface"),
                 "IncorrectEipStatus", 400)
    wait(lambda: slow.eip_status(aid) == "InUse", timeout=5)
    eip = slow.eip(aid)
    assert (eip.instance_type, eip.instance_id, eip.private_ip_address) == ("NetworkInterface", eni, ip)


# =================================================================================================
# DescribeEipAddresses (§4.3) and the EIP actions' region check
# =================================================================================================

def test_describe_eips_bad_associated_instance_type(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
        region_id=REGION, associated_instance_type="Foo")), "InvalidIAssociatedInstanceType.ValueNotSupported", 400)


def test_describe_eips_bad_charge_type(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
        region_id=REGION, charge_type="Free")), "InvalidChargeType.ValueNotSupported", 400)


def test_describe_eips_unknown_id_empty(s: Seed) -> None:
    assert s.eip(FAKE_EIP) is None


def test_describe_eips_bad_lock_reason(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
        region_id=REGION, lock_reason="bored")), "InvalidLockReason.NotFound", 404)


@pytest.mark.parametrize("action", ["describe", "unassociate", "release"])
def test_eip_actions_unknown_region(s: Seed, action: str) -> None:
    bad = "cn-atlantis"
    calls = {
        "describe": lambda: s.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(region_id=bad)),
        "unassociate": lambda: s.vpc.unassociate_eip_address(vm.UnassociateEipAddressRequest(
            region_id=bad, allocation_id=FAKE_EIP)),
        "release": lambda: s.vpc.release_eip_address(vm.ReleaseEipAddressRequest(region_id=bad,
                                                                                allocation_id=FAKE_EIP)),
    }
    expect_error(calls[action], "Forbidden.RegionNotFound", 404)


def test_describe_nat_gateways_unknown_region(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_nat_gateways(vm.DescribeNatGatewaysRequest(region_id="cn-atlantis")),
                 "InvalidRegionId.NotFound", 404)


# =================================================================================================
# SNAT entries (§4.9)
# =================================================================================================

def _create_snat(s: Seed, table: str | None = None, snat_ip: str = NAT_IP, **kw: str) -> str:
    return s.vpc.create_snat_entry(vm.CreateSnatEntryRequest(
        region_id=REGION, snat_table_id=table or s.snat_table, snat_ip=snat_ip, **kw)).body.snat_entry_id


def _delete_snat(s: Seed, entry_id: str, table: str | None = None) -> None:
    s.vpc.delete_snat_entry(vm.DeleteSnatEntryRequest(region_id=REGION, snat_table_id=table or s.snat_table,
                                                      snat_entry_id=entry_id))


def test_snat_unknown_table(s: Seed) -> None:
    expect_error(lambda: _create_snat(s, FAKE_TABLE, source_cidr="192.168.50.0/24"),
                 "InvalidSnatTableId.NotFound", 404)


def test_snat_ip_not_on_gateway(s: Seed) -> None:
    _, other_ip = s.allocate()  # an EIP, but not bound to the NAT gateway
    expect_error(lambda: _create_snat(s, snat_ip=other_ip, source_cidr="192.168.50.0/24"),
                 "InvalidSnatIp.NotFound", 404)


def test_snat_ip_malformed(s: Seed) -> None:
    expect_error(lambda: _create_snat(s, snat_ip="203.0.113", source_cidr="192.168.50.0/24"),
                 "InvalidSnatIp.Malformed", 400)


def test_snat_duplicate_vswitch(s: Seed) -> None:
    # the seed already has snat-app for vsw-app
    expect_error(lambda: _create_snat(s, source_vswitch_id=s.vsw_app), "Forbidden.SourceVSwitchId.Duplicated", 400)


def test_snat_duplicate_cidr(s: Seed) -> None:
    # vsw-app's CIDR given as SourceCIDR: the same source range as the existing entry
    expect_error(lambda: _create_snat(s, source_cidr="192.168.3.0/24"), "OperationUnsupported.CidrConflict", 400)


def test_snat_unknown_source_vswitch(s: Seed) -> None:
    expect_error(lambda: _create_snat(s, source_vswitch_id=FAKE_VSW), "InvalidVSwitchId.NotFound", 404)


@pytest.mark.parametrize("both", [True, False], ids=["both", "neither"])
def test_snat_source_vswitch_xor_cidr(s: Seed, both: bool) -> None:
    kw = {"source_vswitch_id": s.vsw_nat, "source_cidr": "192.168.50.0/24"} if both else {}
    expect_error(lambda: _create_snat(s, **kw), "INVALID_PARAMETER", 400)


def test_delete_snat_unknown_entry(s: Seed) -> None:
    expect_error(lambda: _delete_snat(s, "snat-bp1doesnotexist000"), "InvalidSnatEntryId.NotFound", 404)


def test_delete_snat_unknown_table(s: Seed) -> None:
    entry = s.snat_entries()[0].snat_entry_id
    expect_error(lambda: _delete_snat(s, entry, FAKE_TABLE), "InvalidSnatTableId.NotFound", 404)


def test_delete_snat_pending_then_deleting(slow: Seed) -> None:
    entry = _create_snat(slow, source_cidr="192.168.50.0/24")
    assert slow.snat_status(entry) == "Pending"
    e = expect_error(lambda: _delete_snat(slow, entry), "IncorretSnatEntryStatus", 400)
    assert "IncorrectSnat" not in e.code  # the cloud's own misspelling, kept on purpose
    assert slow.snat_status(entry) == "Pending"
    wait(lambda: slow.snat_status(entry) == "Available", timeout=5)
    _delete_snat(slow, entry)
    assert slow.snat_status(entry) == "Deleting"
    expect_error(lambda: _delete_snat(slow, entry), "IncorretSnatEntryStatus", 400)
    wait(lambda: slow.snat_status(entry) is None, timeout=5)
    expect_error(lambda: _delete_snat(slow, entry), "InvalidSnatEntryId.NotFound", 404)


def test_describe_snat_entries_needs_table_or_gateway(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(region_id=REGION)),
                 "MissingParameter", 400)


def test_describe_snat_entries_unknown_table(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(
        region_id=REGION, snat_table_id=FAKE_TABLE)), "InvalidSnatTableId.NotFound", 404)


def test_describe_forward_entries_unknown_table(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_forward_table_entries(vm.DescribeForwardTableEntriesRequest(
        region_id=REGION, forward_table_id="ftb-bp1doesnotexist000")), "InvalidForwardTableId.NotFound", 404)
    expect_error(lambda: s.vpc.describe_forward_table_entries(vm.DescribeForwardTableEntriesRequest(
        region_id="cn-atlantis", forward_table_id=s.forward_table)), "InvalidRegionId.NotFound", 404)


# =================================================================================================
# Routes (§4.2)
# =================================================================================================

def _create_route(s: Seed, dest: str, table: str | None = None, next_hop_id: str | None = None) -> str:
    return s.vpc.create_route_entry(vm.CreateRouteEntryRequest(
        region_id=REGION, route_table_id=table or s.route_table, destination_cidr_block=dest,
        next_hop_type="NatGateway", next_hop_id=next_hop_id or s.ngw)).body.route_entry_id


def _route_status(s: Seed, route_id: str) -> str | None:
    rows = s.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
        region_id=REGION, route_table_id=s.route_table, route_entry_id=route_id)).body.route_entrys.route_entry
    return rows[0].status if rows else None


def test_route_entry_list_unknown_table(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
        region_id=REGION, route_table_id="vtb-bp1doesnotexist000")), "InvalidRouteTable.NotFound", 404)


def test_create_route_duplicate_destination(s: Seed) -> None:
    # creating the NAT gateway added 0.0.0.0/0 → NatGateway
    expect_error(lambda: _create_route(s, "0.0.0.0/0"), "InvalidCIDRBlock.Duplicate", 400)
    rid = _create_route(s, "10.99.0.0/16")
    wait(lambda: _route_status(s, rid) == "Available")
    expect_error(lambda: _create_route(s, "10.99.0.0/16"), "InvalidCIDRBlock.Duplicate", 400)


def test_create_route_unknown_table_or_next_hop(s: Seed) -> None:
    expect_error(lambda: _create_route(s, "10.99.0.0/16", table="vtb-bp1doesnotexist000"),
                 "InvalidRouteTable.NotFound", 404)
    expect_error(lambda: _create_route(s, "10.99.0.0/16", next_hop_id=FAKE_NGW), "InvalidNextHopId.NotFound", 404)


def test_route_pending_blocks_table(slow: Seed) -> None:
    rid = _create_route(slow, "10.99.0.0/16")
    assert _route_status(slow, rid) == "Pending"
    expect_error(lambda: _create_route(slow, "10.98.0.0/16"), "IncorrectRouteEntryStatus", 400)
    expect_error(lambda: slow.vpc.delete_route_entry(vm.DeleteRouteEntryRequest(
        region_id=REGION, route_entry_id=rid)), "IncorrectRouteEntryStatus", 400)
    assert _route_status(slow, rid) == "Pending"
    wait(lambda: _route_status(slow, rid) == "Available", timeout=5)
    _create_route(slow, "10.98.0.0/16")


# =================================================================================================
# CreateVSwitch (§4.1; codes UNCONFIRMED in the research notes: the emulator's choice is pinned)
# =================================================================================================

def test_create_vswitch_overlapping(s: Seed) -> None:
    expect_error(lambda: s.create_vswitch("192.168.3.128/25"), "InvalidCidrBlock.Overlapped", 400)
    expect_error(lambda: s.create_vswitch("192.168.0.0/22"), "InvalidCidrBlock.Overlapped", 400)


def test_create_vswitch_outside_vpc(s: Seed) -> None:
    expect_error(lambda: s.create_vswitch("10.0.0.0/24"), "InvalidCidrBlock.Malformed", 400)


@pytest.mark.parametrize("cidr", ["192.168.20.0/30", "192.168.20.1/24", "not-a-cidr"])
def test_create_vswitch_bad_cidr(s: Seed, cidr: str) -> None:
    expect_error(lambda: s.create_vswitch(cidr), "InvalidCidrBlock.Malformed", 400)


def test_create_vswitch_unknown_zone_or_vpc(s: Seed) -> None:
    expect_error(lambda: s.create_vswitch("192.168.20.0/24", zone="cn-hangzhou-z"), "InvalidZoneId.NotFound", 404)
    expect_error(lambda: s.create_vswitch("192.168.20.0/24", vpc_id="vpc-bp1doesnotexist000"),
                 "InvalidVpcID.NotFound", 404)


# =================================================================================================
# DescribeRegions, TagResources (VPC flavour)
# =================================================================================================

def test_describe_regions_bad_language(s: Seed) -> None:
    expect_error(lambda: s.vpc.describe_regions(vm.DescribeRegionsRequest(accept_language="fr")),
                 "InvalidAcceptLanguage.NotFound", 404)


def _vpc_tag(s: Seed, ids: list[str], tags: list[tuple[str, str]], resource_type: str = "EIP") -> None:
    s.vpc.tag_resources(vm.TagResourcesRequest(region_id=REGION, resource_type=resource_type, resource_id=ids,
                                               tag=[vm.TagResourcesRequestTag(key=k, value=v) for k, v in tags]))


def test_vpc_tag_more_than_20_ids(s: Seed) -> None:
    ids = [f"eip-bp1fake{n:011d}" for n in range(21)]
    expect_error(lambda: _vpc_tag(s, ids, [("env", "a")]), "NumberExceed.ResourceIds", 400)


def test_vpc_tag_reserved_key_and_duplicates(s: Seed) -> None:
    aid, _ = s.allocate()
    expect_error(lambda: _vpc_tag(s, [aid], [("aliyun-x", "a")]), "InvalidTagKey.Malformed", 400)
    expect_error(lambda: _vpc_tag(s, [aid], [("env", "a"), ("env", "b")]), "Duplicate.TagKey", 400)


def test_vpc_tag_unknown_type_and_resource(s: Seed) -> None:
    aid, _ = s.allocate()
    expect_error(lambda: _vpc_tag(s, [aid], [("env", "a")], resource_type="SPACESHIP"),
                 "InvalidResourceType.NotFound", 404)
    expect_error(lambda: _vpc_tag(s, [FAKE_EIP], [("env", "a")]), "InvalidResourceId.NotFound", 404)


def test_vpc_list_tags_without_id_or_tag(s: Seed) -> None:
    expect_error(lambda: s.vpc.list_tag_resources(vm.ListTagResourcesRequest(region_id=REGION,
                                                                             resource_type="EIP")),
                 "MissingParameter", 400)
