"""Resource state machines over time, observed only through the official SDK.

Each test runs a lab whose latency profile makes every transitional state last long enough to be
seen (a profile file written to tmp_path, or ``realistic`` scaled down), then polls the Describe
API and records the sequence of distinct values it saw.  The sequence must be exactly the
documented state machine (research/aliyun-api.md §2): no skipped state, no extra state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from alibabacloud_ecs20140526 import models as em
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_vpc20160428 import models as vm

from vpclab import Lab
from vpclab.clock import PROFILES_DIR

from .conftest import Clients
from .world_builder import IMAGE, REGION, eni, instance

ZONE = "cn-hangzhou-h"
FIXED_IP = "203.0.113.10"
PREPAID_IP = "203.0.113.30"

# A small VPC built by the scenario loader (which completes every transition at once), so that
# only the API calls made by the test are subject to the latency profile.
BASE: dict[str, Any] = {
    "region": REGION,
    "vpcs": [{
        "name": "vpc-sm",
        "cidr": "10.0.0.0/16",
        "vswitches": [{"name": "vsw-a", "zone": ZONE, "cidr": "10.0.1.0/24"},
                      {"name": "vsw-nat", "zone": ZONE, "cidr": "10.0.2.0/24"}],
        "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
        "instances": [
            {"name": "fixed", "vswitch": "vsw-a", "security_groups": ["sg"], "private_ip": "10.0.1.10",
             "public_ip": FIXED_IP, "bandwidth_out": 5},
            {"name": "private", "vswitch": "vsw-a", "security_groups": ["sg"], "private_ip": "10.0.1.20"},
            # subscription with a fixed IP billed by bandwidth: cannot convert until it is PostPaid
            {"name": "prepaid", "vswitch": "vsw-a", "security_groups": ["sg"], "private_ip": "10.0.1.30",
             "public_ip": PREPAID_IP, "bandwidth_out": 5, "charge_type": "PrePaid",
             "internet_charge_type": "PayByBandwidth"},
        ],
    }],
}

STEP = 0.3  # seconds every transition lasts in the "slow" profile


def _operations() -> list[str]:
    data = yaml.safe_load((PROFILES_DIR / "realistic.yaml").read_text())
    return list(data["operations"])


def write_profile(path: Path, ops: dict[str, float] | None = None, default: float | None = STEP) -> Path:
    """A latency profile file: ``default`` seconds (no jitter) for every known operation, overridden by ``ops``."""
    table = {op: {"base": default, "jitter": 0} for op in _operations()} if default is not None else {}
    for op, base in (ops or {}).items():
        table[op] = {"base": base, "jitter": 0}
    path.write_text(yaml.safe_dump({"name": "test-profile", "operations": table}))
    return path


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[Clients]:
    with Lab(BASE, latency=str(write_profile(tmp_path / "slow.yaml")), time_scale=1.0) as lab:
        yield Clients(lab)


@pytest.fixture
def instant() -> Iterator[Clients]:
    with Lab(BASE) as lab:
        yield Clients(lab)


def trace(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 10.0,
          interval: float = 0.01) -> list[Any]:
    """Poll ``read`` until ``done``; return the distinct consecutive values seen (the state path)."""
    seen: list[Any] = []
    end = time.monotonic() + timeout
    while True:
        v = read()
        if not seen or seen[-1] != v:
            seen.append(v)
        if done(v):
            return seen
        if time.monotonic() > end:
            raise AssertionError(f"final state not reached in {timeout}s; saw {seen}")
        time.sleep(interval)


def timed_trace(read: Callable[[], Any], done: Callable[[Any], bool], t0: float, timeout: float = 10.0
                ) -> list[tuple[float, Any]]:
    """Like ``trace`` but keeps every sample with its time since ``t0``."""
    samples: list[tuple[float, Any]] = []
    end = time.monotonic() + timeout
    while True:
        v = read()
        samples.append((time.monotonic() - t0, v))
        if done(v):
            return samples
        if time.monotonic() > end:
            raise AssertionError(f"final state not reached in {timeout}s; saw {samples[-5:]}")
        time.sleep(0.01)


def expect_error(code: str, fn: Callable[[], Any], status: int | None = None) -> ClientException:
    with pytest.raises(ClientException) as ei:
        fn()
    assert ei.value.code == code, f"expected {code}, got {ei.value.code}: {ei.value.message}"
    if status is not None:
        assert ei.value.status_code == status
    return ei.value


# --- small readers --------------------------------------------------------------------------------

def eni_state(c: Clients, eni_id: str) -> str:
    row = eni(c.ecs, eni_id)
    return "gone" if row is None else row.status


def eip_row(c: Clients, allocation_id: str | None = None, ip: str | None = None) -> Any:
    rows = c.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
        region_id=REGION, allocation_id=allocation_id, eip_address=ip)).body.eip_addresses.eip_address
    return rows[0] if rows else None


def eip_state(c: Clients, allocation_id: str) -> str:
    row = eip_row(c, allocation_id)
    return "gone" if row is None else row.status


def ids(c: Clients) -> dict[str, Any]:
    return c.lab.ids


def create_eni(c: Clients, vsw: str = "vsw-a") -> str:
    body = c.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=ids(c)["vswitches"][vsw],
        security_group_id=ids(c)["security_groups"]["sg"])).body
    assert body.status == "Available"  # CreateNetworkInterface is synchronous
    return body.network_interface_id


def attach(c: Clients, iid: str, eni_id: str) -> None:
    c.ecs.attach_network_interface(em.AttachNetworkInterfaceRequest(region_id=REGION, instance_id=iid,
                                                                    network_interface_id=eni_id))


def detach(c: Clients, iid: str, eni_id: str) -> None:
    c.ecs.detach_network_interface(em.DetachNetworkInterfaceRequest(region_id=REGION, instance_id=iid,
                                                                    network_interface_id=eni_id))


def delete_eni(c: Clients, eni_id: str) -> None:
    c.ecs.delete_network_interface(em.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=eni_id))


def allocate_eip(c: Clients) -> tuple[str, str]:
    body = c.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION, bandwidth="5")).body
    return body.allocation_id, body.eip_address


def associate(c: Clients, allocation_id: str, instance_id: str, instance_type: str = "EcsInstance",
              private_ip: str | None = None) -> None:
    c.vpc.associate_eip_address(vm.AssociateEipAddressRequest(
        region_id=REGION, allocation_id=allocation_id, instance_id=instance_id, instance_type=instance_type,
        private_ip_address=private_ip))


def unassociate(c: Clients, allocation_id: str, instance_id: str, instance_type: str = "EcsInstance") -> None:
    c.vpc.unassociate_eip_address(vm.UnassociateEipAddressRequest(
        region_id=REGION, allocation_id=allocation_id, instance_id=instance_id, instance_type=instance_type))


def public_view(c: Clients, iid: str) -> tuple[tuple[str, ...], str, str]:
    """(PublicIpAddress.IpAddress, EipAddress.IpAddress, EipAddress.AllocationId) of an instance."""
    inst = instance(c.ecs, iid)
    eip = inst.eip_address
    return (tuple(inst.public_ip_address.ip_address or []), (eip.ip_address or "") if eip else "",
            (eip.allocation_id or "") if eip else "")


def default_route(c: Clients, route_table_id: str) -> Any:
    rows = c.vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
        region_id=REGION, route_table_id=route_table_id,
        destination_cidr_block="0.0.0.0/0")).body.route_entrys.route_entry
    return rows[0] if rows else None


def route_table_of(c: Clients, vpc_name: str = "vpc-sm") -> str:
    vpc = c.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION,
                                                     vpc_id=ids(c)["vpcs"][vpc_name])).body.vpcs.vpc[0]
    return vpc.router_table_ids.router_table_ids[0]


# --- ENI -------------------------------------------------------------------------------------------

def test_eni_lifecycle_shows_every_state_then_disappears(slow: Clients) -> None:
    c = slow
    iid = ids(c)["instances"]["fixed"]
    eni_id = create_eni(c)
    assert eni_state(c, eni_id) == "Available"

    attach(c, iid, eni_id)
    # only queries succeed while Attaching
    expect_error("InvalidOperation.InvalidEniState", lambda: delete_eni(c, eni_id), 400)
    assert trace(lambda: eni_state(c, eni_id), lambda s: s == "InUse") == ["Attaching", "InUse"]
    row = eni(c.ecs, eni_id)
    assert row.instance_id == iid and row.attachment.instance_id == iid
    nics = instance(c.ecs, iid).network_interfaces.network_interface
    assert [n.network_interface_id for n in nics if n.type == "Secondary"] == [eni_id]

    detach(c, iid, eni_id)
    expect_error("InvalidOperation.InvalidEniState", lambda: attach(c, iid, eni_id), 400)
    assert trace(lambda: eni_state(c, eni_id), lambda s: s == "Available") == ["Detaching", "Available"]
    assert not eni(c.ecs, eni_id).instance_id
    assert [n for n in instance(c.ecs, iid).network_interfaces.network_interface if n.type == "Secondary"] == []

    delete_eni(c, eni_id)
    assert trace(lambda: eni_state(c, eni_id), lambda s: s == "gone") == ["Deleting", "gone"]
    rows = c.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
        region_id=REGION, network_interface_id=[eni_id])).body.network_interface_sets.network_interface_set
    assert rows == []


# --- EIP -------------------------------------------------------------------------------------------

def test_eip_lifecycle_shows_every_state_then_disappears(slow: Clients) -> None:
    c = slow
    iid = ids(c)["instances"]["private"]
    aid, ip = allocate_eip(c)
    assert eip_state(c, aid) == "Available"

    associate(c, aid, iid)
    expect_error("IncorrectEipStatus", lambda: unassociate(c, aid, iid), 400)
    assert trace(lambda: eip_state(c, aid), lambda s: s == "InUse") == ["Associating", "InUse"]
    row = eip_row(c, aid)
    assert (row.instance_id, row.instance_type, row.ip_address) == (iid, "EcsInstance", ip)

    unassociate(c, aid, iid)
    expect_error("IncorrectEipStatus", lambda: associate(c, aid, iid), 400)
    assert trace(lambda: eip_state(c, aid), lambda s: s == "Available") == ["Unassociating", "Available"]
    assert not eip_row(c, aid).instance_id

    c.vpc.release_eip_address(vm.ReleaseEipAddressRequest(region_id=REGION, allocation_id=aid))
    assert trace(lambda: eip_state(c, aid), lambda s: s == "gone") == ["Releasing", "gone"]
    assert c.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
        region_id=REGION, allocation_id=aid)).body.eip_addresses.eip_address == []


# --- instances -------------------------------------------------------------------------------------

def test_instance_pending_running_stop_start_reboot_on_realistic_profile() -> None:
    # realistic.yaml scaled by 0.05: create 0.75-1.25 s, stop/start 0.35-0.65 s, reboot 2 x 0.55-0.95 s
    with Lab(BASE, latency="realistic", time_scale=0.05) as lab:
        c = Clients(lab)
        req = em.RunInstancesRequest(region_id=REGION, image_id=IMAGE, instance_type="ecs.g7.large",
                                     v_switch_id=lab.ids["vswitches"]["vsw-a"],
                                     security_group_id=lab.ids["security_groups"]["sg"])
        iid = c.ecs.run_instances(req).body.instance_id_sets.instance_id_set[0]

        def status() -> str:
            return instance(c.ecs, iid).status

        assert trace(status, lambda s: s == "Running") == ["Pending", "Running"]
        c.ecs.stop_instance(em.StopInstanceRequest(instance_id=iid))
        assert trace(status, lambda s: s == "Stopped") == ["Stopping", "Stopped"]
        c.ecs.start_instance(em.StartInstanceRequest(instance_id=iid))
        expect_error("IncorrectInstanceStatus", lambda: c.ecs.stop_instance(em.StopInstanceRequest(instance_id=iid)))
        assert trace(status, lambda s: s == "Running") == ["Starting", "Running"]
        c.ecs.reboot_instance(em.RebootInstanceRequest(instance_id=iid))
        assert trace(status, lambda s: s == "Running") == ["Stopping", "Starting", "Running"]


def test_convert_is_accepted_at_once_but_visible_after_the_lag(slow: Clients) -> None:
    c = slow
    iid = ids(c)["instances"]["fixed"]
    assert public_view(c, iid) == ((FIXED_IP,), "", "")
    c.ecs.convert_nat_public_ip_to_eip(em.ConvertNatPublicIpToEipRequest(region_id=REGION, instance_id=iid))
    # accepted, not yet visible: still the fixed public IP, no EIP anywhere
    assert public_view(c, iid) == ((FIXED_IP,), "", "")
    assert eip_row(c, ip=FIXED_IP) is None
    # a second conversion while the first is in flight conflicts
    expect_error("OperationConflict", lambda: c.ecs.convert_nat_public_ip_to_eip(
        em.ConvertNatPublicIpToEipRequest(region_id=REGION, instance_id=iid)))
    path = trace(lambda: public_view(c, iid)[:2], lambda v: v[1] != "")
    # the address moves from PublicIpAddress to EipAddress in one step: never both, never neither
    assert path == [((FIXED_IP,), ""), ((), FIXED_IP)]
    allocation_id = public_view(c, iid)[2]
    assert allocation_id.startswith("eip-")
    row = eip_row(c, ip=FIXED_IP)
    assert row is not None
    assert (row.allocation_id, row.status, row.instance_type, row.instance_id, row.mode) == \
        (allocation_id, "InUse", "EcsInstance", iid, "NAT")


def test_charge_type_change_appears_after_the_lag_and_then_allows_conversion(slow: Clients) -> None:
    c = slow
    iid = ids(c)["instances"]["prepaid"]
    assert instance(c.ecs, iid).instance_charge_type == "PrePaid"

    def convert() -> None:
        c.ecs.convert_nat_public_ip_to_eip(em.ConvertNatPublicIpToEipRequest(region_id=REGION, instance_id=iid))

    # PrePaid + PayByBandwidth cannot convert (current rule, aliyun-api.md §3.10)
    expect_error("InvalidInternetChargeType.ValueNotSupported", convert, 403)
    c.ecs.modify_instance_charge_type(em.ModifyInstanceChargeTypeRequest(
        region_id=REGION, instance_ids=json.dumps([iid]), instance_charge_type="PostPaid"))
    # accepted, not yet effective: still PrePaid, and the pending change blocks the conversion
    assert instance(c.ecs, iid).instance_charge_type == "PrePaid"
    expect_error("OperationConflict", convert)
    path = trace(lambda: instance(c.ecs, iid).instance_charge_type, lambda v: v == "PostPaid")
    assert path == ["PrePaid", "PostPaid"]
    convert()
    assert trace(lambda: public_view(c, iid)[:2], lambda v: v[1] != "") == [((PREPAID_IP,), ""), ((), PREPAID_IP)]


def test_transitions_in_flight_complete_after_a_lab_restart(tmp_path: Path) -> None:
    profile = str(write_profile(tmp_path / "slow.yaml"))
    state = tmp_path / "state"
    with Lab(BASE, latency=profile, state_dir=state) as lab:
        c = Clients(lab)
        lab_ids = lab.ids
        eni_id = create_eni(c)
        attach(c, lab_ids["instances"]["fixed"], eni_id)
        aid, _ = allocate_eip(c)
        associate(c, aid, lab_ids["instances"]["private"])
        assert (eni_state(c, eni_id), eip_state(c, aid)) == ("Attaching", "Associating")
    with Lab(state_dir=state, latency=profile) as lab:
        c = Clients(lab)
        path = trace(lambda: (eni_state(c, eni_id), eip_state(c, aid)), lambda v: v == ("InUse", "InUse"))
        assert path[-1] == ("InUse", "InUse")
        assert set(path[0]) <= {"Attaching", "Associating", "InUse"}


# --- NAT gateway and SNAT ----------------------------------------------------------------------------

def test_nat_gateway_creating_to_available_adds_default_route_then_snat_pending_to_available(slow: Clients
                                                                                           ) -> None:
    c = slow
    rt = route_table_of(c)
    vpc_id = ids(c)["vpcs"]["vpc-sm"]
    assert default_route(c, rt) is None
    ngw = c.vpc.create_nat_gateway(vm.CreateNatGatewayRequest(
        region_id=REGION, vpc_id=vpc_id, v_switch_id=ids(c)["vswitches"]["vsw-nat"], nat_type="Enhanced")).body
    ngw_id = ngw.nat_gateway_id

    def nat_and_route() -> tuple[str, str]:
        n = c.vpc.describe_nat_gateways(vm.DescribeNatGatewaysRequest(
            region_id=REGION, nat_gateway_id=ngw_id)).body.nat_gateways.nat_gateway[0]
        r = default_route(c, rt)
        return n.status, "absent" if r is None else r.status

    path = trace(nat_and_route, lambda v: v == ("Available", "Available"))
    assert path == [("Creating", "absent"), ("Available", "Pending"), ("Available", "Available")]
    hop = default_route(c, rt).next_hops.next_hop[0]
    assert (hop.next_hop_type, hop.next_hop_id) == ("NatGateway", ngw_id)

    aid, ip = allocate_eip(c)
    associate(c, aid, ngw_id, "Nat")
    assert trace(lambda: eip_state(c, aid), lambda s: s == "InUse") == ["Associating", "InUse"]
    stb = ngw.snat_table_ids.snat_table_id[0]
    entry_id = c.vpc.create_snat_entry(vm.CreateSnatEntryRequest(
        region_id=REGION, snat_table_id=stb, snat_ip=ip,
        source_vswitch_id=ids(c)["vswitches"]["vsw-a"])).body.snat_entry_id

    def snat() -> Any:
        return c.vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(
            region_id=REGION, snat_table_id=stb, snat_entry_id=entry_id)).body.snat_table_entries.snat_table_entry[0]

    assert trace(lambda: snat().status, lambda s: s == "Available") == ["Pending", "Available"]
    e = snat()
    assert (e.snat_ip, e.source_cidr, e.source_vswitch_id) == (ip, "10.0.1.0/24", ids(c)["vswitches"]["vsw-a"])


# --- durations follow the profile ---------------------------------------------------------------------

def test_attaching_lasts_what_the_profile_file_says(tmp_path: Path) -> None:
    # eni.attach base 1.0 s x time_scale 0.3 = 0.3 s nominal; everything else instant
    profile = write_profile(tmp_path / "attach.yaml", {"eni.attach": 1.0}, default=None)
    with Lab(BASE, latency=str(profile), time_scale=0.3) as lab:
        c = Clients(lab)
        iid = lab.ids["instances"]["fixed"]
        eni_id = create_eni(c)
        t0 = time.monotonic()
        attach(c, iid, eni_id)
        samples = timed_trace(lambda: eni_state(c, eni_id), lambda s: s == "InUse", t0)
    first_in_use = next(t for t, s in samples if s == "InUse")
    assert samples[0][1] == "Attaching", samples[:5]
    assert all(s == "Attaching" for t, s in samples if t < 0.2), samples[:10]
    assert 0.2 <= first_in_use <= 1.0, f"InUse first seen after {first_in_use:.3f}s (nominal 0.3s)"


def test_realistic_profile_is_scaled_by_time_scale() -> None:
    # eip.associate is 2.0 +- 0.5 s in realistic.yaml; x 0.2 = 0.3-0.5 s
    with Lab(BASE, latency="realistic", time_scale=0.2) as lab:
        c = Clients(lab)
        aid, _ = allocate_eip(c)
        t0 = time.monotonic()
        associate(c, aid, lab.ids["instances"]["private"])
        samples = timed_trace(lambda: eip_state(c, aid), lambda s: s == "InUse", t0)
    first_in_use = next(t for t, s in samples if s == "InUse")
    assert samples[0][1] == "Associating"
    assert 0.2 <= first_in_use <= 1.5, f"InUse first seen after {first_in_use:.3f}s (nominal 0.3-0.5s)"


# --- the instant profile ----------------------------------------------------------------------------

def test_instant_profile_next_call_sees_the_final_state(instant: Clients) -> None:
    c = instant
    lab_ids = ids(c)
    fixed, private, prepaid = (lab_ids["instances"][n] for n in ("fixed", "private", "prepaid"))

    eni_id = create_eni(c)
    attach(c, fixed, eni_id)
    assert eni_state(c, eni_id) == "InUse"
    detach(c, fixed, eni_id)
    assert eni_state(c, eni_id) == "Available"
    delete_eni(c, eni_id)
    assert eni_state(c, eni_id) == "gone"

    aid, _ = allocate_eip(c)
    associate(c, aid, private)
    assert eip_state(c, aid) == "InUse"
    unassociate(c, aid, private)
    assert eip_state(c, aid) == "Available"

    c.ecs.convert_nat_public_ip_to_eip(em.ConvertNatPublicIpToEipRequest(region_id=REGION, instance_id=fixed))
    assert public_view(c, fixed)[:2] == ((), FIXED_IP)

    c.ecs.modify_instance_charge_type(em.ModifyInstanceChargeTypeRequest(
        region_id=REGION, instance_ids=json.dumps([prepaid]), instance_charge_type="PostPaid"))
    assert instance(c.ecs, prepaid).instance_charge_type == "PostPaid"

    iid = c.ecs.run_instances(em.RunInstancesRequest(
        region_id=REGION, image_id=IMAGE, instance_type="ecs.g7.large", v_switch_id=lab_ids["vswitches"]["vsw-a"],
        security_group_id=lab_ids["security_groups"]["sg"])).body.instance_id_sets.instance_id_set[0]
    assert instance(c.ecs, iid).status == "Running"
    c.ecs.stop_instance(em.StopInstanceRequest(instance_id=iid))
    assert instance(c.ecs, iid).status == "Stopped"

    ngw_id = c.vpc.create_nat_gateway(vm.CreateNatGatewayRequest(
        region_id=REGION, vpc_id=lab_ids["vpcs"]["vpc-sm"], v_switch_id=lab_ids["vswitches"]["vsw-nat"],
        nat_type="Enhanced")).body.nat_gateway_id
    assert c.vpc.describe_nat_gateways(vm.DescribeNatGatewaysRequest(
        region_id=REGION, nat_gateway_id=ngw_id)).body.nat_gateways.nat_gateway[0].status == "Available"
    route = default_route(c, route_table_of(c))
    # the route is created when the gateway becomes Available; the next call completes it as well
    assert route is not None and route.status == "Available"


# --- egress precedence as the API shows it ------------------------------------------------------------

def test_egress_precedence_fields_fixed_ip_then_eip_then_eip_on_eni(instant: Clients) -> None:
    c = instant
    fixed, private = ids(c)["instances"]["fixed"], ids(c)["instances"]["private"]

    def by_ip(field: str, ip: str) -> list[str]:
        req = em.DescribeInstancesRequest(region_id=REGION, **{field: json.dumps([ip])})
        return [i.instance_id for i in c.ecs.describe_instances(req).body.instances.instance]

    # a fixed public IP is in PublicIpAddress; an instance without one shows neither
    assert public_view(c, fixed) == ((FIXED_IP,), "", "")
    assert public_view(c, private) == ((), "", "")
    assert by_ip("public_ip_addresses", FIXED_IP) == [fixed]
    assert by_ip("eip_addresses", FIXED_IP) == []

    # after conversion the same address is an EIP on the instance
    c.ecs.convert_nat_public_ip_to_eip(em.ConvertNatPublicIpToEipRequest(region_id=REGION, instance_id=fixed))
    pub, eip_ip, aid = public_view(c, fixed)
    assert (pub, eip_ip) == ((), FIXED_IP)
    assert by_ip("public_ip_addresses", FIXED_IP) == []
    assert by_ip("eip_addresses", FIXED_IP) == [fixed]

    # move the EIP to a secondary ENI: the instance has no public address any more, the ENI has it
    eni_id = create_eni(c)
    attach(c, fixed, eni_id)
    unassociate(c, aid, fixed)
    eni_ip = eni(c.ecs, eni_id).private_ip_address
    associate(c, aid, eni_id, "NetworkInterface", eni_ip)
    assert eip_state(c, aid) == "InUse"
    assert public_view(c, fixed) == ((), "", "")

    row = eni(c.ecs, eni_id)
    assert row.associated_public_ip.public_ip_address == FIXED_IP
    assert row.associated_public_ip.allocation_id == aid
    ip_set = row.private_ip_sets.private_ip_set[0]
    assert ip_set.private_ip_address == eni_ip and ip_set.primary
    assert ip_set.associated_public_ip.public_ip_address == FIXED_IP
    assert ip_set.associated_public_ip.allocation_id == aid

    primary = c.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
        region_id=REGION, instance_id=fixed, type="Primary")).body.network_interface_sets.network_interface_set
    assert len(primary) == 1
    assert not (primary[0].associated_public_ip and primary[0].associated_public_ip.public_ip_address)

    e = eip_row(c, aid)
    assert (e.instance_type, e.instance_id, e.private_ip_address, e.mode) == \
        ("NetworkInterface", eni_id, eni_ip, "NAT")
