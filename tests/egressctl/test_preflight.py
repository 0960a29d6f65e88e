"""Every preflight refusal (DESIGN §2.3), through ``workflows.make_plan`` with explicit instance ids
(a ``UsageError`` naming the instance and the reason, nothing changed in the lab) and through
``workflows.audit`` (the row's action and reason code)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as ecs

from egressctl import workflows
from egressctl.cloud import Cloud
from egressctl.preflight import Options
from vpclab import Lab
from vpclab.resources import enis
from vpclab.resources.instances import Instance

from .conftest import REGION, FakeGuest, cloud_for

SG = [{"protocol": "tcp", "ports": "22/22", "source": "0.0.0.0/0"},
      {"protocol": "tcp", "ports": "80/80", "source": "0.0.0.0/0"}]
ZONE = "cn-hangzhou-h"

# Everything the seed does not have: a full /29, an ENI quota to fill, a vSwitch without SNAT, an SNAT
# entry whose NAT gateway is not where 0.0.0.0/0 points, an offline agent, a subscription that can
# convert by itself, and a second VPC whose NAT gateway has no default route.
SCENARIO: dict[str, Any] = {
    "region": REGION,
    "vpcs": [
        {"name": "vpc-a", "cidr": "10.0.0.0/16",
         "vswitches": [{"name": "vsw-a", "zone": ZONE, "cidr": "10.0.1.0/24"},
                       {"name": "vsw-nat", "zone": ZONE, "cidr": "10.0.100.0/24"},
                       {"name": "vsw-tiny", "zone": ZONE, "cidr": "10.0.2.0/29"},
                       {"name": "vsw-nosnat", "zone": ZONE, "cidr": "10.0.3.0/24"},
                       {"name": "vsw-other", "zone": ZONE, "cidr": "10.0.4.0/24"}],
         "security_groups": [{"name": "sg", "rules": SG}],
         "nat_gateways": [
             # the first gateway gets the VPC's 0.0.0.0/0 route ...
             {"name": "ngw-a", "vswitch": "vsw-nat", "snat": [{"vswitch": "vsw-a"}, {"vswitch": "vsw-tiny"}]},
             # ... so this one's SNAT entry covers vsw-other, but the route points at ngw-a
             {"name": "ngw-b", "vswitch": "vsw-nat", "snat": [{"vswitch": "vsw-other"}]}],
         "instances": [
             {"name": "fixed-1", "vswitch": "vsw-a", "security_groups": ["sg"], "public_ip": "auto"},
             {"name": "quota-1", "vswitch": "vsw-a", "security_groups": ["sg"], "public_ip": "auto",
              "type": "ecs.g6.large"},
             {"name": "offline-1", "vswitch": "vsw-a", "security_groups": ["sg"], "public_ip": "auto",
              "cloud_assistant": False},
             {"name": "prepaid-1", "vswitch": "vsw-a", "security_groups": ["sg"], "public_ip": "auto",
              "charge_type": "PrePaid", "internet_charge_type": "PayByTraffic"},
             {"name": "prepaid-eip", "vswitch": "vsw-a", "security_groups": ["sg"], "charge_type": "PrePaid",
              "internet_charge_type": "PayByBandwidth", "eip": {"bandwidth": 5}},
             # a /29 has 8 - 4 reserved = 4 assignable addresses: these four take them all
             {"name": "tiny-pub", "vswitch": "vsw-tiny", "security_groups": ["sg"], "public_ip": "auto"},
             {"name": "tiny-priv", "vswitch": "vsw-tiny", "security_groups": ["sg"], "count": 3},
             {"name": "nosnat-1", "vswitch": "vsw-nosnat", "security_groups": ["sg"], "public_ip": "auto"},
             {"name": "dark-1", "vswitch": "vsw-nosnat", "security_groups": ["sg"]},
             {"name": "other-1", "vswitch": "vsw-other", "security_groups": ["sg"], "public_ip": "auto"},
         ]},
        {"name": "vpc-b", "cidr": "10.1.0.0/16",
         "vswitches": [{"name": "vsw-b", "zone": ZONE, "cidr": "10.1.1.0/24"},
                       {"name": "vsw-bnat", "zone": ZONE, "cidr": "10.1.100.0/24"}],
         "security_groups": [{"name": "sg-b", "rules": SG}],
         "nat_gateways": [{"name": "ngw-c", "vswitch": "vsw-bnat", "snat": [{"vswitch": "vsw-b"}],
                           "default_route": False}],
         "instances": [{"name": "noroute-1", "vswitch": "vsw-b", "security_groups": ["sg-b"], "public_ip": "auto"}]},
    ],
}


# --- helpers ---------------------------------------------------------------------------------------

def snapshot(lab: Lab) -> dict[str, dict[str, dict[str, Any]]]:
    """Every resource in the lab, every field (ids, statuses, addresses, attachments)."""
    with lab.world.lock:
        return {kind: {rid: obj.to_dict() for rid, obj in table.items()}
                for kind, table in lab.world.tables.items() if table}


def iid(lab: Lab, name: str) -> str:
    return lab.ids["instances"][name]


def refused(cloud: Cloud, lab: Lab, names: list[str], opts: Options | None = None, vpc_id: str | None = None,
            ids: list[str] | None = None) -> str:
    """make_plan with explicit ids must refuse, and change nothing; returns the message."""
    before = snapshot(lab)
    with pytest.raises(workflows.UsageError) as e:
        workflows.make_plan(cloud, REGION, instance_ids=ids or [iid(lab, n) for n in names], select_all=False,
                            vpc_id=vpc_id, tags=None, opts=opts or Options())
    assert snapshot(lab) == before, "make_plan changed the cloud"
    return str(e.value)


def row(cloud: Cloud, name: str, opts: Options | None = None, **kw: Any) -> dict[str, Any]:
    res, _, _ = workflows.audit(cloud, REGION, opts=opts, **kw)
    by_name = {r["name"]: r for r in res.rows}
    return by_name[name]


def codes(r: dict[str, Any]) -> list[str]:
    return [x["code"] for x in r["reasons"]]


def plan_ok(cloud: Cloud, lab: Lab, names: list[str], opts: Options | None = None) -> Any:
    before = snapshot(lab)
    p, _ = workflows.make_plan(cloud, REGION, instance_ids=[iid(lab, n) for n in names], select_all=False,
                               vpc_id=None, tags=None, opts=opts or Options())
    assert snapshot(lab) == before, "make_plan changed the cloud"
    return p


@pytest.fixture
def lab(guest: FakeGuest) -> Iterator[Lab]:
    with Lab(SCENARIO, executor=guest) as lab:
        guest.world = lab.world
        yield lab


@pytest.fixture
def pf_cloud(lab: Lab) -> Cloud:
    return cloud_for(lab)


# --- the seed's exceptions -------------------------------------------------------------------------

def test_not_linux(cloud: Cloud, seed_lab: Lab) -> None:
    msg = refused(cloud, seed_lab, ["win-1"])
    assert iid(seed_lab, "win-1") in msg and "win-1" in msg
    assert "needs Linux" in msg and "windows" in msg.lower()
    r = row(cloud, "win-1")
    assert r["action"] == "blocked" and "not_linux" in codes(r)


def test_not_running(cloud: Cloud, seed_lab: Lab) -> None:
    web1 = iid(seed_lab, "web-1")
    cloud.ecs("StopInstance", ecs.StopInstanceRequest(instance_id=web1), idempotent=False)
    deadline = time.monotonic() + 10
    while seed_lab.world.get(Instance, web1).status != "Stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    msg = refused(cloud, seed_lab, ["web-1"])
    assert web1 in msg and "instance is Stopped" in msg and "needs it Running" in msg
    r = row(cloud, "web-1")
    assert r["action"] == "blocked" and "not_running" in codes(r)


def test_prepaid_needs_billing_change_and_the_option_lifts_it(cloud: Cloud, seed_lab: Lab) -> None:
    msg = refused(cloud, seed_lab, ["billing-1"])
    assert iid(seed_lab, "billing-1") in msg and "billing change" in msg and "--allow-billing-change" in msg
    r = row(cloud, "billing-1")
    assert r["action"] == "blocked" and codes(r) == ["prepaid"]
    assert r["reasons"][0]["fix"] == "--allow-billing-change"

    opts = Options(allow_billing_change=True)
    assert row(cloud, "billing-1", opts)["action"] == "migrate"
    p = plan_ok(cloud, seed_lab, ["billing-1"], opts)
    assert [i.instance_id for i in p.instances] == [iid(seed_lab, "billing-1")]
    item = p.instances[0]
    assert item.billing_change and "billing" in item.steps
    assert item.steps.index("billing") < item.steps.index("convert")
    assert p.options.allow_billing_change is True


def test_hot_plug_less_while_running_and_allow_stop_lifts_it(cloud: Cloud, seed_lab: Lab) -> None:
    msg = refused(cloud, seed_lab, ["small-1"])
    assert iid(seed_lab, "small-1") in msg and "ecs.t6-c1m1.large" in msg and "--allow-stop" in msg
    r = row(cloud, "small-1")
    assert r["action"] == "blocked" and codes(r) == ["needs_stop"]

    opts = Options(allow_stop=True)
    assert row(cloud, "small-1", opts)["action"] == "migrate"
    p = plan_ok(cloud, seed_lab, ["small-1"], opts)
    item = p.instances[0]
    assert item.stop_for_attach and "stop" in item.steps and "start" in item.steps
    assert item.steps.index("stop") < item.steps.index("attach") < item.steps.index("start") < \
        item.steps.index("guest")


def test_inbound_port_not_allowed_by_the_security_group(cloud: Cloud, seed_lab: Lab) -> None:
    opts = Options(inbound_ports=(8443,))
    msg = refused(cloud, seed_lab, ["web-1"], opts)
    assert iid(seed_lab, "web-1") in msg and "tcp/8443" in msg
    r = row(cloud, "web-1", opts)
    assert r["action"] == "blocked" and codes(r) == ["sg_port"]
    # the ports the group does allow pass
    assert row(cloud, "web-1", Options(inbound_ports=(22, 80)))["action"] == "migrate"


def test_unknown_instance_id(cloud: Cloud, seed_lab: Lab) -> None:
    ghost = "i-bp1doesnotexist0000"
    msg = refused(cloud, seed_lab, [], ids=[ghost, iid(seed_lab, "web-1")])
    assert ghost in msg and "no such instance" in msg and REGION in msg
    res, _, _ = workflows.audit(cloud, REGION, instance_ids=[ghost])
    assert res.rows == []


def test_several_refusals_are_all_named_at_once(cloud: Cloud, seed_lab: Lab) -> None:
    msg = refused(cloud, seed_lab, ["win-1", "billing-1", "small-1", "web-1"])
    for name in ("win-1", "billing-1", "small-1"):
        assert iid(seed_lab, name) in msg
    assert iid(seed_lab, "web-1") not in msg  # the clean one is not blamed


def test_private_instance_with_snat_is_excluded_as_ok(cloud: Cloud, seed_lab: Lab) -> None:
    p = plan_ok(cloud, seed_lab, ["app-1", "web-1"])
    assert [i.instance_id for i in p.instances] == [iid(seed_lab, "web-1")]
    ex = {e.instance_id: e for e in p.excluded}
    assert ex[iid(seed_lab, "app-1")].action == "ok"


# --- the lab-built cases ---------------------------------------------------------------------------

def test_baseline_instances_of_the_scenario_are_plannable(pf_cloud: Cloud, lab: Lab) -> None:
    p = plan_ok(pf_cloud, lab, ["fixed-1", "quota-1", "prepaid-1"])
    assert sorted(i.name for i in p.instances) == ["fixed-1", "prepaid-1", "quota-1"]
    prepaid = next(i for i in p.instances if i.name == "prepaid-1")
    # subscription billed by traffic converts without a billing change (current rule)
    assert not prepaid.billing_change and "billing" not in prepaid.steps


def test_eni_quota_full(pf_cloud: Cloud, lab: Lab) -> None:
    q = iid(lab, "quota-1")
    w = lab.world
    with w.lock:
        vsw = lab.ids["vswitches"]["vsw-a"]
        eni = enis.create_network_interface(w, REGION, vswitch_id=vsw,
                                            security_group_ids=[lab.ids["security_groups"]["sg"]], name="someone-else")
        enis.attach(w, REGION, q, eni.id)
        w.advance()
        w.commit()
    assert w.get(enis.Eni, eni.id).status == "InUse"
    msg = refused(pf_cloud, lab, ["quota-1"])
    assert q in msg and "ENI quota full" in msg and "2 of 2" in msg and "ecs.g6.large" in msg
    r = row(pf_cloud, "quota-1")
    assert r["action"] == "blocked" and codes(r) == ["eni_quota"]


def test_vswitch_without_free_ip(pf_cloud: Cloud, lab: Lab) -> None:
    msg = refused(pf_cloud, lab, ["tiny-pub"])
    assert iid(lab, "tiny-pub") in msg and "no free IP" in msg and "10.0.2.0/29" in msg
    r = row(pf_cloud, "tiny-pub")
    assert r["action"] == "blocked" and codes(r) == ["no_free_ip"]


def test_no_snat_entry_covers_the_instance(pf_cloud: Cloud, lab: Lab) -> None:
    msg = refused(pf_cloud, lab, ["nosnat-1"])
    assert iid(lab, "nosnat-1") in msg and "no outbound internet" in msg and "no SNAT entry covers" in msg
    r = row(pf_cloud, "nosnat-1")
    assert r["action"] == "blocked" and codes(r) == ["no_snat"]
    assert r["egress_now"]["kind"] == "fixed_ip" and r["egress_after"] == {"kind": "none", "ip": None, "via": None}


def test_no_default_route_to_the_nat_gateway(pf_cloud: Cloud, lab: Lab) -> None:
    msg = refused(pf_cloud, lab, ["noroute-1"])
    assert iid(lab, "noroute-1") in msg and "no 0.0.0.0/0 route" in msg
    r = row(pf_cloud, "noroute-1")
    assert r["action"] == "blocked" and codes(r) == ["no_snat"]


def test_snat_entry_covers_but_the_route_points_at_another_nat_gateway(pf_cloud: Cloud, lab: Lab) -> None:
    msg = refused(pf_cloud, lab, ["other-1"])
    ngw_a, ngw_b = lab.ids["nat_gateways"]["ngw-a"], lab.ids["nat_gateways"]["ngw-b"]
    assert iid(lab, "other-1") in msg and "0.0.0.0/0" in msg
    assert f"points at NatGateway {ngw_a}, not at NAT gateway {ngw_b}" in msg
    r = row(pf_cloud, "other-1")
    assert r["action"] == "blocked" and codes(r) == ["no_snat"]


def test_cloud_assistant_offline(pf_cloud: Cloud, lab: Lab) -> None:
    msg = refused(pf_cloud, lab, ["offline-1"])
    assert iid(lab, "offline-1") in msg and "Cloud Assistant is not online" in msg and "--guest ssh|print" in msg
    r = row(pf_cloud, "offline-1")
    assert r["action"] == "blocked" and codes(r) == ["assistant_offline"]
    # another runner lifts it
    assert row(pf_cloud, "offline-1", Options(guest="print"))["action"] == "migrate"


def test_expiring_subscription(pf_cloud: Cloud, lab: Lab) -> None:
    pid = iid(lab, "prepaid-1")
    w = lab.world
    with w.lock:
        inst = w.get(Instance, pid)
        inst.expired_time = time.time() + 3 * 3600  # three hours left
        w.touch(inst)
        w.commit()
    msg = refused(pf_cloud, lab, ["prepaid-1"])
    assert pid in msg and "expires" in msg and "within 24 h" in msg
    r = row(pf_cloud, "prepaid-1")
    assert r["action"] == "blocked" and codes(r) == ["expiring"]


def test_instance_without_public_ip_is_a_skip_not_an_error(pf_cloud: Cloud, lab: Lab) -> None:
    dark = iid(lab, "dark-1")
    r = row(pf_cloud, "dark-1")
    assert r["action"] == "skip" and codes(r) == ["no_public_ip"] and r["inbound_ip"] is None
    p = plan_ok(pf_cloud, lab, ["dark-1", "fixed-1"])
    assert [i.name for i in p.instances] == ["fixed-1"]
    ex = {e.instance_id: e for e in p.excluded}
    assert ex[dark].action == "skip" and ex[dark].reasons and "no public IP" in ex[dark].reasons[0]
    # alone, it gives an empty plan (nothing to do), not an error
    alone = plan_ok(pf_cloud, lab, ["dark-1"])
    assert alone.instances == [] and [e.instance_id for e in alone.excluded] == [dark]


def test_instance_in_another_vpc_when_vpc_is_given(pf_cloud: Cloud, lab: Lab) -> None:
    vpc_b = lab.ids["vpcs"]["vpc-b"]
    fixed = iid(lab, "fixed-1")  # in vpc-a, migratable
    msg = refused(pf_cloud, lab, [], ids=[fixed], vpc_id=vpc_b)
    assert fixed in msg and "no such instance" in msg and vpc_b in msg


def test_audit_by_vpc_lists_only_that_vpc(pf_cloud: Cloud, lab: Lab) -> None:
    vpc_b = lab.ids["vpcs"]["vpc-b"]
    res, _, _ = workflows.audit(pf_cloud, REGION, vpc_id=vpc_b)
    assert [r["name"] for r in res.rows] == ["noroute-1"]


def test_prepaid_with_an_eip_on_the_primary_needs_no_billing_change(pf_cloud: Cloud, lab: Lab) -> None:
    r = row(pf_cloud, "prepaid-eip")
    assert r["state"] == "eip_primary"
    assert r["action"] == "migrate", r["reasons"]
