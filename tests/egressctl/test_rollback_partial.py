"""Rollback from every partial state: apply stops after each step in turn (that step's successor
fails), then rollback brings the instance back to "EIP on the primary NIC" and removes only what
egressctl created."""

from __future__ import annotations

from pathlib import Path

import pytest

from egressctl import plan as plan_mod
from egressctl import steps, workflows
from egressctl.preflight import Options
from vpclab import Lab
from vpclab.resources.eips import Eip
from vpclab.resources.enis import Eni
from vpclab.resources.instances import Instance

from .conftest import REGION, SEED, FakeGuest, cloud_for

SEQUENCE = ["preflight", "convert", "create_eni", "attach", "guest", "unassociate", "associate", "verify"]


@pytest.mark.parametrize("stop_before", SEQUENCE[1:])
def test_rollback_after_apply_stopped_before(stop_before: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    guest = FakeGuest()
    with Lab(SEED, executor=guest) as lab:
        guest.world = lab.world
        cloud = cloud_for(lab)
        web1 = lab.ids["instances"]["web-1"]
        p, _ = workflows.make_plan(cloud, REGION, instance_ids=[web1], select_all=False, vpc_id=None, tags=None,
                                   opts=Options())
        assert p.instances[0].steps == SEQUENCE
        path = tmp_path / "plan.json"
        plan_mod.save(p, path)
        eips_before = {e.ip for e in lab.world.all(Eip)}
        foreign = lab.world.get(Eni, lab.world.get(Instance, web1).eni_ids[0]).id  # the primary: never touched

        def boom(ctx: steps.Ctx) -> steps.Outcome:
            raise steps.StepFailed(f"injected failure before {stop_before}")

        with monkeypatch.context() as m:
            m.setitem(steps.APPLY_STEPS, stop_before, boom)
            s = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "apply")
        assert web1 in s.failed and stop_before in s.failed[web1]
        r = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "rollback")
        assert r.ok, r
        w = lab.world
        inst = w.get(Instance, web1)
        eip = next((e for e in w.all(Eip) if e.ip == "203.0.113.10"), None)
        if stop_before == "convert":  # nothing was converted: the fixed IP is untouched
            assert inst.public_ip == "203.0.113.10" and eip is None
        else:
            assert eip is not None
            assert (eip.status, eip.instance_type, eip.instance_id) == ("InUse", "EcsInstance", web1)
            assert inst.eip_id == eip.id
        assert [e.id for e in w.all(Eni) if e.tag_dict().get("egressctl:instance") == web1] == []
        assert inst.eni_ids == [foreign]
        assert eips_before <= {e.ip for e in w.all(Eip)} | {inst.public_ip}
        # the guest is told to remove its routing only if it was configured
        modes = guest.modes(web1)
        assert modes == (["apply", "remove"] if SEQUENCE.index(stop_before) > SEQUENCE.index("guest") else [])
        # and the instance can be migrated again afterwards
        again = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "apply")
        assert again.ok, again
        assert eip_on_eni(w, "203.0.113.10", web1)


def eip_on_eni(w, ip: str, iid: str) -> bool:
    eip = next(e for e in w.all(Eip) if e.ip == ip)
    eni = w.get(Eni, eip.instance_id)
    return eip.status == "InUse" and eip.instance_type == "NetworkInterface" and eni is not None and \
        eni.instance_id == iid
