"""The seed scenario end to end through the SDK: audit, plan, apply, the state the cloud ends in."""

from __future__ import annotations

from pathlib import Path

from egressctl import plan as plan_mod
from egressctl import workflows
from egressctl.preflight import Options
from vpclab import Lab
from vpclab.resources.eips import Eip
from vpclab.resources.enis import Eni
from vpclab.resources.instances import Instance

from .conftest import REGION, FakeGuest


def test_audit_classifies_the_seed(cloud, seed_lab: Lab) -> None:
    res, _, _ = workflows.audit(cloud, REGION)
    by_name = {r["name"]: r for r in res.rows}
    assert by_name["web-1"]["action"] == "migrate"
    assert by_name["web-1"]["egress_now"] == {"kind": "fixed_ip", "ip": "203.0.113.10", "via": None}
    assert by_name["web-1"]["egress_after"]["kind"] == "snat"
    assert by_name["web-1"]["egress_after"]["ip"] == "203.0.113.100"
    assert by_name["web-2"]["action"] == "migrate" and by_name["web-2"]["egress_now"]["kind"] == "eip"
    assert by_name["app-1"]["action"] == "ok" and by_name["app-1"]["egress_now"]["kind"] == "snat"
    assert by_name["billing-1"]["action"] == "blocked"
    assert any(r["fix"] == "--allow-billing-change" for r in by_name["billing-1"]["reasons"])
    assert by_name["small-1"]["action"] == "blocked"
    assert any(r["fix"] == "--allow-stop" for r in by_name["small-1"]["reasons"])
    assert by_name["win-1"]["action"] == "blocked"
    assert any(r["code"] == "not_linux" for r in by_name["win-1"]["reasons"])
    # batched: a constant number of calls, not one per instance
    assert sum(res.calls.values()) <= 20


def test_apply_migrates_web_1_and_web_2(cloud, seed_lab: Lab, guest: FakeGuest, tmp_path: Path) -> None:
    ids = [seed_lab.ids["instances"]["web-1"], seed_lab.ids["instances"]["web-2"]]
    p, _ = workflows.make_plan(cloud, REGION, instance_ids=ids, select_all=False, vpc_id=None, tags=None,
                               opts=Options())
    path = tmp_path / "plan.json"
    plan_mod.save(p, path)
    assert plan_mod.load(path) == p
    summary = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "apply")
    assert summary.ok, summary
    w = seed_lab.world
    for iid, ip in zip(ids, ("203.0.113.10", "203.0.113.12"), strict=True):
        inst = w.get(Instance, iid)
        assert inst.public_ip == "" and inst.eip_id == ""
        tool = [e for e in w.all(Eni) if e.instance_id == iid and e.eni_type == "Secondary"]
        assert len(tool) == 1 and tool[0].status == "InUse"
        assert tool[0].tag_dict()["egressctl:instance"] == iid
        eip = next(e for e in w.all(Eip) if e.ip == ip)
        assert (eip.status, eip.instance_type, eip.instance_id, eip.private_ip) == (
            "InUse", "NetworkInterface", tool[0].id, tool[0].primary_ip)
        assert guest.modes(iid) == ["apply"]
    # running it again changes nothing and sends no mutating call
    before = dict(cloud.stats.calls)
    again = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "apply")
    assert again.ok and sorted(again.done) == sorted(ids)
    mutating = {a for a, n in cloud.stats.calls.items() if n != before.get(a, 0) and not a.startswith("Describe")}
    assert mutating == {"GetCallerIdentity"} or mutating == set()


def test_verify_then_rollback(cloud, seed_lab: Lab, guest: FakeGuest, tmp_path: Path) -> None:
    from egressctl.verify import verify

    web1 = seed_lab.ids["instances"]["web-1"]
    p, _ = workflows.make_plan(cloud, REGION, instance_ids=[web1], select_all=False, vpc_id=None, tags=None,
                               opts=Options())
    path = tmp_path / "plan.json"
    plan_mod.save(p, path)
    runner = workflows.runner_for(cloud, p, workflows.ApplySettings(), path)
    before = verify(cloud, REGION, [web1], runner, echo_url="https://myip.ipip.net", ports=[22],
                    checks=("control", "egress"), interval_s=0.05)
    assert before[0]["ok"] is False
    assert before[0]["checks"]["egress"]["egress_ip"] == "203.0.113.10"  # its own fixed IP: SNAT bypassed
    assert workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "apply").ok
    after = verify(cloud, REGION, [web1], runner, echo_url="https://myip.ipip.net", ports=[22],
                   checks=("control", "egress"), interval_s=0.05)
    assert after[0]["ok"] is True, after
    assert after[0]["checks"]["egress"]["egress_ip"] == "203.0.113.100"
    # rollback: EIP back on the primary NIC, the tool's ENI gone, the guest config removed
    summary = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "rollback")
    assert summary.ok, summary
    w = seed_lab.world
    inst = w.get(Instance, web1)
    eip = next(e for e in w.all(Eip) if e.ip == "203.0.113.10")
    assert (eip.status, eip.instance_type, eip.instance_id) == ("InUse", "EcsInstance", web1)
    assert inst.eip_id == eip.id and inst.public_ip == ""
    assert not [e for e in w.all(Eni) if e.eni_type == "Secondary" and e.tag_dict().get("egressctl:instance") == web1]
    assert guest.modes(web1) == ["apply", "remove"]
    back = verify(cloud, REGION, [web1], runner, echo_url="https://myip.ipip.net", ports=[22],
                  checks=("control", "egress"), interval_s=0.05)
    assert back[0]["checks"]["egress"]["egress_ip"] == "203.0.113.10"
    # and apply again works (new generation, fresh ClientTokens)
    assert workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "apply").ok
    assert eip.instance_type == "NetworkInterface"
