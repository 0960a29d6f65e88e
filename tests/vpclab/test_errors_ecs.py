"""ECS error matrix: every documented precondition answers with its documented code and HTTP status.

Each case drives the emulator through the official SDK only (research/aliyun-api.md §1, §3, §10)
and asserts ``Code`` and HTTP status exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as em

from .error_helpers import OTHER_ZONE, Seed, expect_error, seed_clients
from .world_builder import REGION, wait

FAKE_INSTANCE = "i-bp1doesnotexist00000"
FAKE_ENI = "eni-bp1doesnotexist0000"
FAKE_VSW = "vsw-bp1doesnotexist0000"
FAKE_SG = "sg-bp1doesnotexist00000"


@pytest.fixture
def s() -> Iterator[Seed]:
    """The seed world, instant latency."""
    with seed_clients() as c:
        yield Seed(c)


@pytest.fixture
def slow() -> Iterator[Seed]:
    """The seed world with the realistic latency profile at 0.2× (attach ≈ 0.6 s, associate ≈ 0.4 s)."""
    with seed_clients(latency="realistic", time_scale=0.2) as c:
        yield Seed(c)


@pytest.fixture
def stopping() -> Iterator[tuple[Seed, str]]:
    """app-1 caught in ``Stopping`` (realistic stop ≈ 10 s ± 3 s × 0.1 = 0.7–1.3 s)."""
    with seed_clients(latency="realistic", time_scale=0.1) as c:
        s = Seed(c)
        iid = s.inst["app-1"]
        s.stop(iid)
        assert s.status(iid) == "Stopping"
        yield s, iid


def _primary_eni(s: Seed, iid: str) -> str:
    rows = s.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
        region_id=REGION, instance_id=iid, type="Primary")).body.network_interface_sets.network_interface_set
    assert len(rows) == 1
    return rows[0].network_interface_id


# =================================================================================================
# AttachNetworkInterface (§3.7, §3.9, §8)
# =================================================================================================

def test_attach_unknown_instance(s: Seed) -> None:
    eni = s.create_eni()
    expect_error(lambda: s.attach(FAKE_INSTANCE, eni), "InvalidEcsId.NotFound", 404)


def test_attach_unknown_eni(s: Seed) -> None:
    expect_error(lambda: s.attach(s.inst["web-1"], FAKE_ENI), "InvalidEniId.NotFound", 404)


def test_attach_missing_network_interface_id(s: Seed) -> None:
    expect_error(lambda: s.ecs.attach_network_interface(em.AttachNetworkInterfaceRequest(
        region_id=REGION, instance_id=s.inst["web-1"])), "MissingParameter", 400)


def test_attach_eni_not_available(s: Seed) -> None:
    eni = s.create_eni()
    s.attach_and_wait(s.inst["web-1"], eni)
    expect_error(lambda: s.attach(s.inst["app-1"], eni), "InvalidOperation.InvalidEniState", 400)
    assert s.eni(eni).instance_id == s.inst["web-1"]


def test_attach_primary_eni_refused(s: Seed) -> None:
    primary = _primary_eni(s, s.inst["web-1"])
    expect_error(lambda: s.attach(s.inst["app-1"], primary), "InvalidOperation.InvalidEniType", 403)


def test_attach_instance_pending(slow: Seed) -> None:
    iid = slow.run(wait_running=False)  # realistic create: Pending for ≈ 20 s × 0.2
    eni = slow.create_eni()
    assert slow.status(iid) == "Pending"
    expect_error(lambda: slow.attach(iid, eni), "InvalidOperation.InvalidEcsState", 400)
    assert slow.status(iid) == "Pending"
    assert slow.eni_status(eni) == "Available"


def test_attach_instance_stopping(stopping: tuple[Seed, str]) -> None:
    s, iid = stopping
    eni = s.create_eni()
    expect_error(lambda: s.attach(iid, eni), "InvalidOperation.InvalidEcsState", 400)
    assert s.status(iid) == "Stopping"
    # and once the instance settles in Stopped, the same attach is accepted
    wait(lambda: s.status(iid) == "Stopped", timeout=5)
    s.attach_and_wait(iid, eni)


def test_attach_zone_mismatch(s: Seed) -> None:
    vsw_i = s.create_vswitch("192.168.4.0/24", zone=OTHER_ZONE)
    eni = s.create_eni(vsw_i)
    assert s.eni(eni).zone_id == OTHER_ZONE
    expect_error(lambda: s.attach(s.inst["web-1"], eni), "InvalidOperation.AvailabilityZoneMismatch", 403)
    assert s.eni_status(eni) == "Available"


def test_attach_vpc_mismatch(s: Seed) -> None:
    _, vsw, sg = s.other_vpc()  # same zone (cn-hangzhou-h), another VPC
    eni = s.create_eni(vsw, sg)
    expect_error(lambda: s.attach(s.inst["web-1"], eni), "InvalidOperation.VpcMismatch", 403)
    assert s.eni_status(eni) == "Available"


def test_attach_eni_per_instance_limit(s: Seed) -> None:
    types = s.ecs.describe_instance_types(em.DescribeInstanceTypesRequest(
        instance_types=["ecs.g6.large"])).body.instance_types.instance_type
    assert types[0].eni_quantity == 2  # including the primary ENI
    iid = s.run("ecs.g6.large")
    first, second = s.create_eni(), s.create_eni()
    s.attach_and_wait(iid, first)
    expect_error(lambda: s.attach(iid, second), "EniPerInstanceLimitExceeded", 403)
    assert s.eni_status(second) == "Available"


def test_attach_without_hot_plug_needs_stopped(s: Seed) -> None:
    iid = s.inst["small-1"]  # ecs.t6-c1m1.large: no ENI hot-plug (§8)
    eni = s.create_eni()
    assert s.status(iid) == "Running"
    expect_error(lambda: s.attach(iid, eni), "InvalidOperation.InvalidEcsState", 400)
    assert s.eni_status(eni) == "Available"
    s.stop_and_wait(iid)
    s.attach_and_wait(iid, eni)
    # and detaching needs it stopped too
    s.start_and_wait(iid)
    expect_error(lambda: s.detach(iid, eni), "InvalidOperation.InvalidEcsState", 400)
    assert s.eni_status(eni) == "InUse"


# =================================================================================================
# DetachNetworkInterface / DeleteNetworkInterface (§3.8)
# =================================================================================================

def test_detach_primary_eni(s: Seed) -> None:
    iid = s.inst["web-1"]
    expect_error(lambda: s.detach(iid, _primary_eni(s, iid)), "InvalidOperation.DetachPrimaryEniNotAllowed", 400)


def test_detach_eni_not_in_use(s: Seed) -> None:
    eni = s.create_eni()
    expect_error(lambda: s.detach(s.inst["web-1"], eni), "InvalidOperation.InvalidEniState", 400)


def test_detach_eni_attached_elsewhere(s: Seed) -> None:
    eni = s.create_eni()
    s.attach_and_wait(s.inst["web-1"], eni)
    expect_error(lambda: s.detach(s.inst["app-1"], eni), "InvalidOperation.InvalidEniState", 400)
    assert s.eni_status(eni) == "InUse"


def test_detach_unknown_instance_and_eni(s: Seed) -> None:
    eni = s.create_eni()
    expect_error(lambda: s.detach(FAKE_INSTANCE, eni), "InvalidEcsId.NotFound", 404)
    expect_error(lambda: s.detach(s.inst["web-1"], FAKE_ENI), "InvalidEniId.NotFound", 404)


def test_delete_eni_in_use(s: Seed) -> None:
    eni = s.create_eni()
    s.attach_and_wait(s.inst["web-1"], eni)
    expect_error(lambda: s.delete_eni(eni), "InvalidOperation.InvalidEniState", 400)
    assert s.eni_status(eni) == "InUse"


def test_delete_eni_with_eip_refused(s: Seed) -> None:
    eni = s.create_eni()
    ip = s.eni(eni).private_ip_address
    aid, _ = s.allocate()
    s.associate(aid, eni, "NetworkInterface", private_ip_address=ip)
    wait(lambda: s.eip_status(aid) == "InUse")
    assert s.eni_status(eni) == "Available"
    expect_error(lambda: s.delete_eni(eni), "InvalidOperation.InvalidEniState", 400)
    assert s.eni_status(eni) == "Available"


def test_delete_primary_eni(s: Seed) -> None:
    expect_error(lambda: s.delete_eni(_primary_eni(s, s.inst["web-1"])), "InvalidOperation.InvalidEniType", 403)


def test_delete_unknown_eni(s: Seed) -> None:
    expect_error(lambda: s.delete_eni(FAKE_ENI), "InvalidEniId.NotFound", 404)


# =================================================================================================
# ENI transitional states (§2, §10.2): only queries succeed while Attaching / Detaching
# =================================================================================================

def test_eni_attaching_refuses_attach_detach_delete(slow: Seed) -> None:
    iid, other = slow.inst["web-1"], slow.inst["app-1"]
    eni = slow.create_eni()
    slow.attach(iid, eni)
    assert slow.eni_status(eni) == "Attaching"
    expect_error(lambda: slow.attach(iid, eni), "InvalidOperation.InvalidEniState", 400)
    expect_error(lambda: slow.attach(other, eni), "InvalidOperation.InvalidEniState", 400)
    expect_error(lambda: slow.delete_eni(eni), "InvalidOperation.InvalidEniState", 400)
    expect_error(lambda: slow.detach(iid, eni), "InvalidOperation.InvalidEniState", 400)
    ip = slow.eni(eni).private_ip_address
    aid, _ = slow.allocate()
    expect_error(lambda: slow.associate(aid, eni, "NetworkInterface", private_ip_address=ip),
                 "InvalidStatus.EniStatusNotSupport", 400)
    assert slow.eni_status(eni) == "Attaching"  # every refusal above happened inside the window
    wait(lambda: slow.eni_status(eni) == "InUse", timeout=5)
    assert slow.eni(eni).instance_id == iid
    assert slow.eip_status(aid) == "Available"


def test_eni_detaching_refuses_attach_detach_delete(slow: Seed) -> None:
    iid = slow.inst["web-1"]
    eni = slow.create_eni()
    slow.attach_and_wait(iid, eni, timeout=5)
    slow.detach(iid, eni)
    assert slow.eni_status(eni) == "Detaching"
    expect_error(lambda: slow.detach(iid, eni), "InvalidOperation.InvalidEniState", 400)
    expect_error(lambda: slow.attach(slow.inst["app-1"], eni), "InvalidOperation.InvalidEniState", 400)
    expect_error(lambda: slow.delete_eni(eni), "InvalidOperation.InvalidEniState", 400)
    assert slow.eni_status(eni) == "Detaching"
    wait(lambda: slow.eni_status(eni) == "Available", timeout=5)
    assert slow.eni(eni).instance_id == ""


# =================================================================================================
# CreateNetworkInterface (§3.6, §3.9, §4.1 reserved addresses)
# =================================================================================================

def test_create_eni_unknown_vswitch(s: Seed) -> None:
    expect_error(lambda: s.create_eni(FAKE_VSW), "InvalidVSwitchId.NotFound", 404)


def test_create_eni_unknown_security_group(s: Seed) -> None:
    expect_error(lambda: s.create_eni(sg_id=FAKE_SG), "InvalidSecurityGroupId.NotFound", 404)


def test_create_eni_security_group_of_other_vpc(s: Seed) -> None:
    _, _, other_sg = s.other_vpc()
    expect_error(lambda: s.create_eni(sg_id=other_sg), "InvalidSecurityGroupId.NotVpc", 403)


def test_create_eni_both_security_group_params(s: Seed) -> None:
    expect_error(lambda: s.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=s.vsw_app, security_group_id=s.sg, security_group_ids=[s.sg])),
        "InvalidParameter.Conflict", 400)


def test_create_eni_without_security_group(s: Seed) -> None:
    expect_error(lambda: s.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=s.vsw_app)), "MissingParameter", 400)


def test_create_eni_without_vswitch(s: Seed) -> None:
    expect_error(lambda: s.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, security_group_id=s.sg)), "MissingParameter", 400)


def test_create_eni_vswitch_full(s: Seed) -> None:
    vsw = s.create_vswitch("192.168.7.0/29")  # 8 addresses − 4 reserved = 4 usable
    assert s.available_ips(vsw) == 4
    made = [s.create_eni(vsw) for _ in range(4)]
    assert sorted(s.eni(e).private_ip_address for e in made) == [f"192.168.7.{n}" for n in (1, 2, 3, 4)]
    assert s.available_ips(vsw) == 0
    expect_error(lambda: s.create_eni(vsw), "InvalidVSwitchId.IpNotEnough", 403)
    expect_error(lambda: s.run(vsw_id=vsw, wait_running=False), "InvalidVSwitchId.IpNotEnough", 403)


def test_create_eni_primary_ip_taken(s: Seed) -> None:
    # web-1's primary address (scenario: 192.168.3.10)
    expect_error(lambda: s.create_eni(primary_ip_address="192.168.3.10"), "InvalidPrivateIpAddress.Duplicated", 400)
    eni = s.create_eni(primary_ip_address="192.168.3.99")
    assert s.eni(eni).private_ip_address == "192.168.3.99"
    expect_error(lambda: s.create_eni(primary_ip_address="192.168.3.99"), "InvalidPrivateIpAddress.Duplicated", 400)


@pytest.mark.parametrize("ip", [
    "192.168.4.10",  # inside the VPC, outside the vSwitch
    "10.1.2.3",  # outside the VPC
    "192.168.3.0",  # network address
    "192.168.3.253",  # the vSwitch gateway (broadcast − 2)
    "192.168.3.254",
    "192.168.3.255",  # broadcast
])
def test_create_eni_primary_ip_not_assignable(s: Seed, ip: str) -> None:
    expect_error(lambda: s.create_eni(primary_ip_address=ip), "InvalidIp.Address", 403)


def test_create_eni_first_and_last_assignable_ok(s: Seed) -> None:
    vsw = s.create_vswitch("192.168.9.0/24")
    for ip in ("192.168.9.1", "192.168.9.252"):
        assert s.eni(s.create_eni(vsw, primary_ip_address=ip)).private_ip_address == ip


def test_create_eni_idempotent_parameter_mismatch(s: Seed) -> None:
    token = "err-matrix-token-0001"
    first = s.create_eni(client_token=token)
    assert s.create_eni(client_token=token) == first  # same token, same params: same ENI
    expect_error(lambda: s.create_eni(client_token=token, network_interface_name="other-name"),
                 "IdempotentParameterMismatch", 400)


def test_create_eni_client_token_too_long(s: Seed) -> None:
    expect_error(lambda: s.create_eni(client_token="x" * 65), "InvalidClientToken.ValueNotSupported", 400)


# =================================================================================================
# vSwitch accounting as DescribeVSwitches shows it (§4.1)
# =================================================================================================

def test_vswitch_available_ip_count(s: Seed) -> None:
    vsw = s.create_vswitch("192.168.8.0/24")
    assert s.available_ips(vsw) == 252  # 256 − first − last three
    eni = s.create_eni(vsw)
    assert s.available_ips(vsw) == 251
    iid = s.run(vsw_id=vsw)
    assert s.available_ips(vsw) == 250
    s.create_eni(vsw)
    assert s.available_ips(vsw) == 249
    s.delete_eni(eni)
    wait(lambda: s.eni(eni) is None)
    assert s.available_ips(vsw) == 250
    s.ecs.delete_instance(em.DeleteInstanceRequest(instance_id=iid, force=True))
    assert s.available_ips(vsw) == 251


def test_seed_vswitch_counts(s: Seed) -> None:
    assert s.available_ips(s.vsw_app) == 252 - 7  # seven instances
    assert s.available_ips(s.vsw_nat) == 252 - 1  # the NAT gateway's private address


# =================================================================================================
# ConvertNatPublicIpToEip (§3.10)
# =================================================================================================

def _convert(s: Seed, iid: str) -> None:
    s.ecs.convert_nat_public_ip_to_eip(em.ConvertNatPublicIpToEipRequest(region_id=REGION, instance_id=iid))


def test_convert_unknown_instance(s: Seed) -> None:
    expect_error(lambda: _convert(s, FAKE_INSTANCE), "InvalidInstanceId.NotFound", 404)


def test_convert_without_public_ip(s: Seed) -> None:
    expect_error(lambda: _convert(s, s.inst["app-1"]), "OperationDenied", 403)


def test_convert_instance_with_eip(s: Seed) -> None:
    expect_error(lambda: _convert(s, s.inst["web-2"]), "OperationDenied", 403)


def test_convert_prepaid_pay_by_bandwidth(s: Seed) -> None:
    iid = s.inst["billing-1"]
    inst = s.instance(iid)
    assert (inst.instance_charge_type, inst.internet_charge_type) == ("PrePaid", "PayByBandwidth")
    expect_error(lambda: _convert(s, iid), "InvalidInternetChargeType.ValueNotSupported", 403)
    assert s.instance(iid).public_ip_address.ip_address == ["203.0.113.11"]


def test_convert_prepaid_legacy_rule() -> None:
    with seed_clients(convert_rule="legacy") as c:
        s = Seed(c)
        expect_error(lambda: _convert(s, s.inst["billing-1"]), "ChargeTypeViolation", 403)


def test_convert_instance_stopping(stopping: tuple[Seed, str]) -> None:
    s, _ = stopping
    iid = s.inst["web-1"]  # has a fixed public IP: only its state is wrong
    s.stop(iid)
    expect_error(lambda: _convert(s, iid), "IncorrectInstanceStatus", 403)
    assert s.status(iid) == "Stopping"
    wait(lambda: s.status(iid) == "Stopped", timeout=5)
    _convert(s, iid)  # a Stopped instance may convert
    wait(lambda: s.instance(iid).eip_address.allocation_id != "", timeout=5)


def test_convert_instance_pending(slow: Seed) -> None:
    iid = slow.run(wait_running=False, internet_max_bandwidth_out=5)
    assert slow.status(iid) == "Pending"
    expect_error(lambda: _convert(slow, iid), "IncorrectInstanceStatus", 403)


def test_convert_in_flight_conflicts_then_settles(slow: Seed) -> None:
    iid = slow.inst["web-1"]
    _convert(slow, iid)
    expect_error(lambda: _convert(slow, iid), "OperationConflict", 409)
    expect_error(lambda: slow.ecs.modify_instance_charge_type(em.ModifyInstanceChargeTypeRequest(
        region_id=REGION, instance_ids=json.dumps([iid]), instance_charge_type="PrePaid")), "OperationConflict", 409)
    aid, _ = slow.allocate()
    expect_error(lambda: slow.associate(aid, iid), "InvalidStatus.InstanceHasBandWidth", 400)
    assert slow.instance(iid).eip_address.allocation_id == ""  # still in flight
    wait(lambda: slow.instance(iid).eip_address.allocation_id != "", timeout=5)
    assert slow.instance(iid).public_ip_address.ip_address == []
    expect_error(lambda: _convert(slow, iid), "OperationDenied", 403)  # nothing left to convert


# =================================================================================================
# ModifyInstanceChargeType (§3.11)
# =================================================================================================

def _charge(s: Seed, ids: list[str], **kw: object) -> None:
    s.ecs.modify_instance_charge_type(em.ModifyInstanceChargeTypeRequest(
        region_id=REGION, instance_ids=json.dumps(ids), **kw))


def test_charge_more_than_20_ids(s: Seed) -> None:
    ids = [f"i-bp1fake{n:012d}" for n in range(21)]
    expect_error(lambda: _charge(s, ids, instance_charge_type="PostPaid"), "InstancesIdQuotaExceed", 400)


def test_charge_default_is_prepaid(s: Seed) -> None:
    iid = s.inst["billing-1"]  # already PrePaid: the default target PrePaid is no change
    expect_error(lambda: _charge(s, [iid]), "InvalidInstanceChargeType.ValueNotSupported", 400)
    assert s.instance(iid).instance_charge_type == "PrePaid"


def test_charge_same_type_explicit(s: Seed) -> None:
    expect_error(lambda: _charge(s, [s.inst["web-1"]], instance_charge_type="PostPaid"),
                 "InvalidInstanceChargeType.ValueNotSupported", 400)


def test_charge_unknown_charge_type(s: Seed) -> None:
    expect_error(lambda: _charge(s, [s.inst["web-1"]], instance_charge_type="Spot"),
                 "InvalidInstanceChargeType.ValueNotSupported", 400)


def test_charge_dry_run(s: Seed) -> None:
    iid = s.inst["billing-1"]
    expect_error(lambda: _charge(s, [iid], instance_charge_type="PostPaid", dry_run=True), "DryRunOperation", 400)
    assert s.instance(iid).instance_charge_type == "PrePaid"  # nothing changed


def test_charge_unknown_instance(s: Seed) -> None:
    expect_error(lambda: _charge(s, [FAKE_INSTANCE], instance_charge_type="PostPaid"),
                 "InvalidInstanceId.NotFound", 404)


def test_charge_missing_ids(s: Seed) -> None:
    expect_error(lambda: s.ecs.modify_instance_charge_type(em.ModifyInstanceChargeTypeRequest(
        region_id=REGION, instance_charge_type="PostPaid")), "MissingParameter", 400)


def test_charge_instance_stopping(stopping: tuple[Seed, str]) -> None:
    s, iid = stopping
    expect_error(lambda: _charge(s, [iid], instance_charge_type="PrePaid"), "InvalidStatus.ValueNotSupported", 400)
    assert s.status(iid) == "Stopping"


def test_charge_client_token_too_long(s: Seed) -> None:
    expect_error(lambda: _charge(s, [s.inst["billing-1"]], instance_charge_type="PostPaid", client_token="t" * 65),
                 "InvalidClientToken.ValueNotSupported", 400)


# =================================================================================================
# DescribeInstances (§3.2): bad filter values are errors, unknown ids are not
# =================================================================================================

def _describe(s: Seed, **kw: object) -> list[Any]:
    return s.ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, **kw)).body.instances.instance


@pytest.mark.parametrize(("field", "value", "code"), [
    ("status", "Sleeping", "InvalidStatus.NotFound"),
    ("instance_charge_type", "Spot", "InvalidInstanceChargeType.NotFound"),
    ("instance_network_type", "ipv6only", "InvalidNetworkType.NotFound"),
])
def test_describe_instances_bad_filter(s: Seed, field: str, value: str, code: str) -> None:
    expect_error(lambda: _describe(s, **{field: value}), code, 404)


def test_describe_instances_bad_internet_charge_type(s: Seed) -> None:
    expect_error(lambda: _describe(s, internet_charge_type="PayByMagic"),
                 "InvalidInternetChargeType.ValueNotSupported", 404)


def test_describe_instances_bad_lock_reason(s: Seed) -> None:
    expect_error(lambda: _describe(s, lock_reason="bored"), "InvalidLockReason.NotFound", 404)


def test_describe_instances_bad_filter_key(s: Seed) -> None:
    expect_error(lambda: _describe(s, filter=[em.DescribeInstancesRequestFilter(key="Colour", value="x")]),
                 "InvalidFilterKey.NotFound", 404)


def test_describe_instances_too_many_tags(s: Seed) -> None:
    tags = [em.DescribeInstancesRequestTag(key=f"k{n}", value="v") for n in range(21)]
    expect_error(lambda: _describe(s, tag=tags), "InvalidTagCount", 400)


def test_describe_instances_unknown_ids_empty(s: Seed) -> None:
    assert _describe(s, instance_ids=json.dumps([FAKE_INSTANCE])) == []
    rows = _describe(s, instance_ids=json.dumps([FAKE_INSTANCE, s.inst["web-1"]]))
    assert [r.instance_id for r in rows] == [s.inst["web-1"]]


def test_describe_instances_empty_id_list(s: Seed) -> None:
    assert _describe(s, instance_ids="[]") == []
    assert len(_describe(s, page_size=100)) == 7  # the same call without the filter sees all


def test_describe_instances_dry_run(s: Seed) -> None:
    expect_error(lambda: _describe(s, dry_run=True), "DryRunOperation", 400)


def test_describe_instances_unknown_region(s: Seed) -> None:
    expect_error(lambda: s.ecs.describe_instances(em.DescribeInstancesRequest(region_id="cn-atlantis")),
                 "InvalidRegionId.NotFound", 404)


# =================================================================================================
# DescribeRegions / DescribeZones (§3.1)
# =================================================================================================

def test_describe_zones_unknown_region(s: Seed) -> None:
    expect_error(lambda: s.ecs.describe_zones(em.DescribeZonesRequest(region_id="cn-atlantis")),
                 "InvalidRegionId.NotFound", 404)


@pytest.mark.parametrize("lang", ["zh-CN", "en-US", "ja"])
def test_describe_regions_languages_ok(s: Seed, lang: str) -> None:
    assert s.ecs.describe_regions(em.DescribeRegionsRequest(accept_language=lang)).body.regions.region


def test_describe_regions_bad_language(s: Seed) -> None:
    expect_error(lambda: s.ecs.describe_regions(em.DescribeRegionsRequest(accept_language="fr")),
                 "InvalidAcceptLanguage.NotFound", 404)


def test_describe_regions_bad_resource_type(s: Seed) -> None:
    expect_error(lambda: s.ecs.describe_regions(em.DescribeRegionsRequest(resource_type="spaceship")),
                 "InvalidResourceType.NotFound", 404)


def test_describe_zones_bad_charge_type(s: Seed) -> None:
    expect_error(lambda: s.ecs.describe_zones(em.DescribeZonesRequest(region_id=REGION, instance_charge_type="Free")),
                 "InvalidInstanceChargeType.NotFound", 404)


def test_describe_zones_bad_spot_strategy(s: Seed) -> None:
    expect_error(lambda: s.ecs.describe_zones(em.DescribeZonesRequest(region_id=REGION, spot_strategy="Cheapest")),
                 "InvalidSpotStrategy", 400)


# =================================================================================================
# RunCommand / Cloud Assistant (§3.12)
# =================================================================================================

def _run_command(s: Seed, ids: list[str], type_: str = "RunShellScript", content: str = "echo hi") -> str:
    return s.ecs.run_command(em.RunCommandRequest(region_id=REGION, type=type_, command_content=content,
                                                  instance_id=ids)).body.invoke_id


def _results(s: Seed, invoke_id: str) -> list[Any]:
    return s.ecs.describe_invocation_results(em.DescribeInvocationResultsRequest(
        region_id=REGION, invoke_id=invoke_id)).body.invocation.invocation_results.invocation_result


def _overall(s: Seed, invoke_id: str) -> str:
    rows = s.ecs.describe_invocations(em.DescribeInvocationsRequest(
        region_id=REGION, invoke_id=invoke_id)).body.invocations.invocation
    return rows[0].invocation_status


def test_run_command_unknown_instance(s: Seed) -> None:
    expect_error(lambda: _run_command(s, [s.inst["web-1"], FAKE_INSTANCE]), "InvalidInstance.NotFound", 404)


def test_run_command_bad_type(s: Seed) -> None:
    expect_error(lambda: _run_command(s, [s.inst["web-1"]], type_="RunPythonScript"), "InvalidCmdType.NotFound", 403)


def test_run_command_more_than_100_instances(s: Seed) -> None:
    ids = [f"i-bp1fake{n:012d}" for n in range(101)]
    expect_error(lambda: _run_command(s, ids), "InstanceIds.ExceedLimit", 403)


def test_run_command_missing_content(s: Seed) -> None:
    expect_error(lambda: s.ecs.run_command(em.RunCommandRequest(region_id=REGION, type="RunShellScript",
                                                                instance_id=[s.inst["web-1"]])),
                 "MissingParameter", 400)


def test_run_command_without_executor_fails_honestly(s: Seed) -> None:
    assert s.c.lab.world.executor is None
    inv = _run_command(s, [s.inst["web-1"]])
    wait(lambda: _overall(s, inv) not in ("Pending", "Running"))
    assert _overall(s, inv) == "Failed"
    [r] = _results(s, inv)
    assert r.invocation_status == "Failed"
    assert r.error_code == "ExecutionException"
    assert "executor" in r.error_info


def test_run_command_on_stopped_instance_is_invalid(s: Seed) -> None:
    iid = s.inst["app-2"]
    s.stop_and_wait(iid)
    inv = _run_command(s, [iid])
    wait(lambda: _overall(s, inv) not in ("Pending", "Running"))
    [r] = _results(s, inv)
    assert (r.invocation_status, r.error_code) == ("Invalid", "InstanceNotRunning")
    assert _overall(s, inv) == "Failed"


def test_run_command_wrong_os_is_invalid(s: Seed) -> None:
    inv = _run_command(s, [s.inst["win-1"]])  # RunShellScript on Windows
    wait(lambda: _overall(s, inv) not in ("Pending", "Running"))
    [r] = _results(s, inv)
    assert (r.invocation_status, r.error_code) == ("Invalid", "CommandNotApplicable")


def test_cloud_assistant_status_unknown_instance(s: Seed) -> None:
    expect_error(lambda: s.ecs.describe_cloud_assistant_status(em.DescribeCloudAssistantStatusRequest(
        region_id=REGION, instance_id=[FAKE_INSTANCE])), "InvalidInstance.NotFound", 404)


def test_cloud_assistant_status_too_many_ids(s: Seed) -> None:
    ids = [f"i-bp1fake{n:012d}" for n in range(51)]
    expect_error(lambda: s.ecs.describe_cloud_assistant_status(em.DescribeCloudAssistantStatusRequest(
        region_id=REGION, instance_id=ids)), "InstanceIds.ExceedLimit", 403)


@pytest.mark.parametrize("action", ["describe_invocations", "describe_invocation_results"])
@pytest.mark.parametrize(("field", "value", "code"), [
    ("page_size", 0, "InvalidParam.PageSize"),
    ("page_size", 51, "InvalidParam.PageSize"),
    ("page_number", 0, "InvalidParam.PageNumber"),
])
def test_invocations_bad_paging(s: Seed, action: str, field: str, value: int, code: str) -> None:
    req_cls = em.DescribeInvocationsRequest if action == "describe_invocations" else \
        em.DescribeInvocationResultsRequest
    expect_error(lambda: getattr(s.ecs, action)(req_cls(region_id=REGION, **{field: value})), code, 403)


# =================================================================================================
# TagResources / ListTagResources (§3.13)
# =================================================================================================

def _tag(s: Seed, ids: list[str], tags: list[tuple[str, str]], resource_type: str | None = "instance",
         region_id: str | None = REGION) -> None:
    s.ecs.tag_resources(em.TagResourcesRequest(region_id=region_id, resource_type=resource_type, resource_id=ids,
                                               tag=[em.TagResourcesRequestTag(key=k, value=v) for k, v in tags]))


def test_tag_more_than_20_tags(s: Seed) -> None:
    expect_error(lambda: _tag(s, [s.inst["web-1"]], [(f"k{n}", "v") for n in range(21)]), "NumberExceed.Tags", 400)


def test_tag_20_tags_ok(s: Seed) -> None:
    _tag(s, [s.inst["app-1"]], [(f"k{n}", "v") for n in range(19)])  # + the seed's own app=api tag = 20


def test_tag_quota_per_resource(s: Seed) -> None:
    _tag(s, [s.inst["app-1"]], [(f"k{n}", "v") for n in range(19)])
    expect_error(lambda: _tag(s, [s.inst["app-1"]], [("one-more", "v")]), "QuotaExceed.Tags", 403)


def test_tag_duplicate_keys(s: Seed) -> None:
    expect_error(lambda: _tag(s, [s.inst["web-1"]], [("env", "a"), ("env", "b")]), "Duplicate.TagKey", 400)


@pytest.mark.parametrize("key", ["aliyun-owner", "aliyunX", "acs:system", "http://example.com"])
def test_tag_reserved_key(s: Seed, key: str) -> None:
    expect_error(lambda: _tag(s, [s.inst["web-1"]], [(key, "v")]), "InvalidTagKey.Malformed", 400)


def test_tag_bad_value(s: Seed) -> None:
    expect_error(lambda: _tag(s, [s.inst["web-1"]], [("url", "https://example.com")]), "InvalidTagValue.Malformed",
                 400)


def test_tag_more_than_50_ids(s: Seed) -> None:
    ids = [f"i-bp1fake{n:012d}" for n in range(51)]
    expect_error(lambda: _tag(s, ids, [("env", "a")]), "NumberExceed.ResourceIds", 400)


def test_tag_unknown_resource(s: Seed) -> None:
    expect_error(lambda: _tag(s, [s.inst["web-1"], FAKE_INSTANCE], [("env", "a")]), "InvalidResourceId.NotFound", 404)
    rows = s.ecs.list_tag_resources(em.ListTagResourcesRequest(region_id=REGION, resource_type="instance",
                                                               resource_id=[s.inst["web-1"]])).body
    assert {t.tag_key for t in rows.tag_resources.tag_resource} == {"app"}  # all or nothing


def test_tag_without_tags(s: Seed) -> None:
    expect_error(lambda: _tag(s, [s.inst["web-1"]], []), "MissingParameter.Tags", 404)


def test_tag_unknown_resource_type(s: Seed) -> None:
    expect_error(lambda: _tag(s, [s.inst["web-1"]], [("env", "a")], resource_type="spaceship"),
                 "InvalidResourceType.NotFound", 404)


@pytest.mark.parametrize(("missing", "code"), [("resource_type", "MissingParameter.ResourceType"),
                                                ("region_id", "MissingParameter.RegionId")])
def test_tag_missing_required(s: Seed, missing: str, code: str) -> None:
    expect_error(lambda: _tag(s, [s.inst["web-1"]], [("env", "a")], **{missing: None}), code, 404)


def test_list_tags_without_id_or_tag(s: Seed) -> None:
    expect_error(lambda: s.ecs.list_tag_resources(em.ListTagResourcesRequest(region_id=REGION,
                                                                             resource_type="instance")),
                 "MissingParameter", 400)


def test_list_tags_unknown_resource_type(s: Seed) -> None:
    expect_error(lambda: s.ecs.list_tag_resources(em.ListTagResourcesRequest(
        region_id=REGION, resource_type="spaceship", resource_id=[s.inst["web-1"]])),
        "InvalidResourceType.NotFound", 404)


# =================================================================================================
# Instance lifecycle (common 403 IncorrectInstanceStatus form, §1)
# =================================================================================================

def test_stop_stopped_instance(s: Seed) -> None:
    iid = s.inst["app-2"]
    s.stop_and_wait(iid)
    expect_error(lambda: s.stop(iid), "IncorrectInstanceStatus", 403)


def test_stop_stopping_instance(stopping: tuple[Seed, str]) -> None:
    s, iid = stopping
    expect_error(lambda: s.stop(iid), "IncorrectInstanceStatus", 403)
    assert s.status(iid) == "Stopping"


def test_start_running_instance(s: Seed) -> None:
    expect_error(lambda: s.ecs.start_instance(em.StartInstanceRequest(instance_id=s.inst["web-1"])),
                 "IncorrectInstanceStatus", 403)


def test_reboot_stopped_instance(s: Seed) -> None:
    iid = s.inst["app-2"]
    s.stop_and_wait(iid)
    expect_error(lambda: s.ecs.reboot_instance(em.RebootInstanceRequest(instance_id=iid)),
                 "IncorrectInstanceStatus", 403)


def test_stop_unknown_instance(s: Seed) -> None:
    expect_error(lambda: s.stop(FAKE_INSTANCE), "InvalidInstanceId.NotFound", 404)


def test_delete_running_instance_without_force(s: Seed) -> None:
    iid = s.inst["app-2"]
    expect_error(lambda: s.ecs.delete_instance(em.DeleteInstanceRequest(instance_id=iid)),
                 "IncorrectInstanceStatus", 403)
    assert s.status(iid) == "Running"
    s.ecs.delete_instance(em.DeleteInstanceRequest(instance_id=iid, force=True))
    assert s.ecs.describe_instances(em.DescribeInstancesRequest(
        region_id=REGION, instance_ids=json.dumps([iid]))).body.instances.instance == []


def test_delete_prepaid_instance(s: Seed) -> None:
    expect_error(lambda: s.ecs.delete_instance(em.DeleteInstanceRequest(instance_id=s.inst["billing-1"], force=True)),
                 "ChargeTypeViolation", 403)
