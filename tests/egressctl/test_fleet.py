"""A 200-instance mixed fleet through the engine, with realistic (scaled) transition times: every
migratable instance ends migrated, the others are untouched, no address is lost, one tool ENI per
instance, the journal says done, and the API cost per instance is bounded (batched polling)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from egressctl import journal, workflows
from egressctl import plan as plan_mod
from egressctl.preflight import Options
from vpclab import Lab
from vpclab.resources.eips import Eip
from vpclab.resources.enis import Eni
from vpclab.resources.instances import Instance

from .conftest import REGION, FakeGuest, cloud_for

ZONE = "cn-hangzhou-h"
WINDOWS = "win2022_21H2_x64_dtc_en-us_40G_alibase_20240111.vhd"


def _group(name: str, vswitch: str, count: int, **kw: Any) -> dict[str, Any]:
    return {"name": name, "vswitch": vswitch, "security_groups": ["sg"], "count": count, **kw}


# name prefix -> (count, what egressctl must do with it)
GROUPS = {
    "fixed-a": 90, "fixed-b": 40,  # fixed public IPs in two vSwitches
    "eip": 20,  # an EIP on the primary NIC
    "prepaid": 10,  # subscription billed by bandwidth: billing change first
    "small": 8,  # no ENI hot-plug: stop, attach, start
    "private": 20,  # already SNAT: ok
    "win": 4,  # Windows: blocked
    "dark": 8,  # a vSwitch without SNAT coverage: blocked
}
MIGRATE = ("fixed-a", "fixed-b", "eip", "prepaid", "small")

SCENARIO: dict[str, Any] = {
    "region": REGION,
    "public_ip_pools": ["198.18.0.0/15"],
    "vpcs": [{
        "name": "vpc-fleet", "cidr": "10.0.0.0/16",
        "vswitches": [{"name": "vsw-a", "zone": ZONE, "cidr": "10.0.0.0/20"},
                      {"name": "vsw-b", "zone": ZONE, "cidr": "10.0.16.0/20"},
                      {"name": "vsw-nat", "zone": ZONE, "cidr": "10.0.100.0/24"},
                      {"name": "vsw-dark", "zone": ZONE, "cidr": "10.0.200.0/24"}],
        "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22", "source": "0.0.0.0/0"}]}],
        "nat_gateways": [{"name": "ngw", "vswitch": "vsw-nat", "eips": [{"ip": "198.18.255.1", "bandwidth": 200}],
                          "snat": [{"vswitch": "vsw-a"}, {"vswitch": "vsw-b"}]}],
        "instances": [
            _group("fixed-a", "vsw-a", GROUPS["fixed-a"], public_ip="auto"),
            _group("fixed-b", "vsw-b", GROUPS["fixed-b"], public_ip="auto"),
            _group("eip", "vsw-a", GROUPS["eip"], eip={"bandwidth": 5}),
            _group("prepaid", "vsw-b", GROUPS["prepaid"], public_ip="auto", bandwidth_out=10, charge_type="PrePaid",
                   internet_charge_type="PayByBandwidth"),
            _group("small", "vsw-b", GROUPS["small"], public_ip="auto", type="ecs.t6-c1m1.large"),
            _group("private", "vsw-a", GROUPS["private"]),
            _group("win", "vsw-a", GROUPS["win"], public_ip="auto", image=WINDOWS),
            _group("dark", "vsw-dark", GROUPS["dark"], public_ip="auto"),
        ],
    }],
}


def group_of(name: str) -> str:
    return name.rsplit("-", 1)[0]


def frozen(lab: Lab, iid: str) -> dict[str, Any]:
    """An instance with everything attached to it, every field but the render counter."""
    w = lab.world
    inst = w.get(Instance, iid)
    enis = sorted((e for e in w.all(Eni) if e.instance_id == iid), key=lambda e: e.id)
    eips = sorted((e for e in w.all(Eip) if e.instance_id in {iid, *(x.id for x in enis)}), key=lambda e: e.id)
    strip = lambda o: {k: v for k, v in o.to_dict().items() if k != "rev"}  # noqa: E731
    return {"instance": strip(inst), "enis": [strip(e) for e in enis], "eips": [strip(e) for e in eips]}


def test_fleet_of_200(guest: FakeGuest, tmp_path: Path) -> None:
    t_start = time.monotonic()
    with Lab(SCENARIO, executor=guest, latency="realistic", time_scale=0.02, seed=42) as lab:
        guest.world = lab.world
        w = lab.world
        names = lab.ids["instances"]
        assert len(names) == 200 == sum(GROUPS.values())
        by_group: dict[str, list[str]] = {}
        for name, iid in names.items():
            by_group.setdefault(group_of(name), []).append(iid)
        assert {g: len(v) for g, v in by_group.items()} == GROUPS
        movers = {iid for g in MIGRATE for iid in by_group[g]}
        others = set(names.values()) - movers

        with w.lock:
            eips_before = {e.ip for e in w.all(Eip)}
            public_before = {i.public_ip for i in w.all(Instance) if i.public_ip} | eips_before
            inbound_of = {i.id: i.public_ip or w.get(Eip, i.eip_id).ip for i in w.all(Instance)
                          if i.id in movers}
            untouched_before = {iid: frozen(lab, iid) for iid in others}
        assert len(public_before) == 160 + 20 + 1

        cloud = cloud_for(lab)
        opts = Options(allow_billing_change=True, allow_stop=True)
        t0 = time.monotonic()
        p, _ = workflows.make_plan(cloud, REGION, instance_ids=None, select_all=True, vpc_id=None, tags=None,
                                   opts=opts)
        plan_s = time.monotonic() - t0
        planned = {i.instance_id for i in p.instances}
        assert planned == movers
        excluded = {e.instance_id: e for e in p.excluded}
        assert set(excluded) == others
        for iid in by_group["win"] + by_group["dark"]:
            assert excluded[iid].action == "blocked"
        for iid in by_group["private"]:
            assert excluded[iid].action == "ok"
        steps = {i.instance_id: i.steps for i in p.instances}
        assert all("billing" in steps[i] for i in by_group["prepaid"])
        assert all("stop" in steps[i] and "start" in steps[i] for i in by_group["small"])
        path = tmp_path / "fleet.json"
        plan_mod.save(p, path)

        before = Counter(cloud.stats.calls)
        events: Counter[str] = Counter()
        summary = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "apply",
                                       on_event=lambda e: events.update([e["event"]]))
        calls = Counter(cloud.stats.calls) - before
        assert summary.ok, (summary.failed, summary.paused, summary.not_started, summary.aborted)
        assert set(summary.done) == movers

        with w.lock:
            # every migratable instance: no public IP on the primary, its address InUse on exactly one tool ENI
            tool_enis: dict[str, list[Eni]] = {}
            for e in w.all(Eni):
                if e.eni_type == "Secondary":
                    tool_enis.setdefault(e.tag_dict().get("egressctl:instance", "?"), []).append(e)
            assert set(tool_enis) == movers, "a secondary ENI that is not one per migrated instance"
            eip_by_ip = {e.ip: e for e in w.all(Eip)}
            for iid in movers:
                inst = w.get(Instance, iid)
                assert inst.public_ip == "" and inst.eip_id == "", iid
                assert inst.status == "Running", (iid, inst.status)
                (eni,) = tool_enis[iid]
                assert eni.status == "InUse" and eni.instance_id == iid and eni.tag_dict()["egressctl:managed"] == \
                    "true"
                eip = eip_by_ip[inbound_of[iid]]
                assert (eip.status, eip.instance_type, eip.instance_id, eip.private_ip) == (
                    "InUse", "NetworkInterface", eni.id, eni.primary_ip), iid
                assert [x for x in w.all(Eip) if x.instance_id == eni.id] == [eip]
            for iid in by_group["prepaid"]:
                assert w.get(Instance, iid).charge_type == "PostPaid"
            # the blocked, skipped and already-fine instances: exactly as they were
            for iid in others:
                assert frozen(lab, iid) == untouched_before[iid], iid
            # no address lost: every EIP is still there, every migrated fixed IP became one (none released),
            # the blocked instances keep their fixed IPs
            eips_after = {e.ip for e in w.all(Eip)}
            assert eips_before <= eips_after
            assert eips_after - eips_before == {inbound_of[i] for i in movers} - eips_before
            public_after = eips_after | {i.public_ip for i in w.all(Instance) if i.public_ip}
            assert public_after == public_before

        j = journal.Journal(journal.paths_for(path)[0], p.plan_id, p.checksum, create=False)
        try:
            recs = j.all()
            assert {r.instance_id for r in recs} == movers
            assert {r.status for r in recs} == {"done"}
            assert all(r.data.get("eni_id") == tool_enis[r.instance_id][0].id for r in recs)
        finally:
            j.close()

        # the API bill: bounded per instance, and polling is batched
        n = len(movers)
        describe = sum(v for a, v in calls.items() if a.startswith(("Describe", "List")))
        mutating = {a: v for a, v in calls.items() if not a.startswith(("Describe", "List"))
                    and a != "GetCallerIdentity"}
        rounds = max(1.0, summary.wall_s / 0.05)  # at most one poll round per interval
        per = {a: round(v / n, 2) for a, v in sorted(calls.items())}
        print(f"\nfleet: {n} migrated in {summary.wall_s:.1f} s (plan {plan_s:.1f} s); calls per instance {per}; "
              f"mutating/instance {sum(mutating.values()) / n:.2f}; describe/instance {describe / n:.2f}; "
              f"describe/(instance*round) {describe / (n * rounds):.4f}; errors {dict(cloud.stats.errors)}; "
              f"retries {dict(cloud.stats.retries)}; events {dict(events)}")
        assert sum(mutating.values()) / n <= 8, mutating
        assert max(mutating.values()) <= n + 10, mutating  # no action sent twice per instance (bar a few retries)
        assert mutating.get("ConvertNatPublicIpToEip", 0) <= n - len(by_group["eip"]) + 5
        assert mutating.get("CreateNetworkInterface", 0) == n
        assert "ReleaseEipAddress" not in calls and "DeleteNetworkInterface" not in calls
        assert describe / n <= 10, calls
        assert describe / (n * rounds) < 0.05, (describe, n, rounds)
    assert time.monotonic() - t_start < 150  # typically ~20 s; generous for a loaded machine
