"""SIGKILL `egressctl apply` at random points, run it again, and check that nothing was lost or
duplicated: every EIP that existed still exists, each instance has exactly one tool ENI, and the
end state is the plan's.  The same for rollback."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egressctl import plan as plan_mod
from egressctl import workflows
from egressctl.preflight import Options
from vpclab import DEFAULT_ACCESS_KEY_SECRET, Lab
from vpclab.resources.eips import Eip
from vpclab.resources.enis import Eni
from vpclab.resources.instances import Instance

from .conftest import REGION, FakeGuest, cloud_for

SCENARIO = {
    "region": REGION,
    "vpcs": [{
        "name": "v", "cidr": "10.0.0.0/16",
        "vswitches": [{"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.0.1.0/24"},
                      {"name": "n", "zone": "cn-hangzhou-h", "cidr": "10.0.2.0/24"}],
        "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
        "nat_gateways": [{"name": "ngw", "vswitch": "n", "snat": [{"vswitch": "a"}]}],
        "instances": [
            {"name": "web", "vswitch": "a", "security_groups": ["sg"], "count": 6, "public_ip": "auto"},
            {"name": "eip", "vswitch": "a", "security_groups": ["sg"], "eip": {}},
        ],
    }],
}


def _env(lab: Lab) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": lab.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
                "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true", "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
                "EGRESSCTL_ENDPOINT": lab.endpoint, "EGRESSCTL_REGION": REGION})
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "egressctl", *args]


def _snapshot_eips(lab: Lab) -> set[str]:
    with lab.world.lock:
        return {e.ip for e in lab.world.all(Eip)}


def _check_invariants(lab: Lab, p: plan_mod.Plan, eips_before: set[str], migrated: bool) -> None:
    w = lab.world
    with w.lock:
        assert eips_before <= {e.ip for e in w.all(Eip)}, "an EIP was lost"
        for item in p.instances:
            tool = [e for e in w.all(Eni) if e.tag_dict().get("egressctl:instance") == item.instance_id]
            inst = w.get(Instance, item.instance_id)
            eip = next(e for e in w.all(Eip) if e.ip == item.public_ip)
            if migrated:
                assert len(tool) == 1, f"{item.instance_id}: {len(tool)} tool ENIs"
                assert tool[0].status == "InUse" and tool[0].instance_id == item.instance_id
                assert (eip.status, eip.instance_type, eip.instance_id) == ("InUse", "NetworkInterface", tool[0].id)
                assert inst.public_ip == "" and inst.eip_id == ""
            else:
                assert tool == [], f"{item.instance_id}: tool ENI left behind after rollback"
                assert (eip.status, eip.instance_type, eip.instance_id) == ("InUse", "EcsInstance",
                                                                            item.instance_id)


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_apply_then_resume(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    guest = FakeGuest()
    with Lab(SCENARIO, executor=guest, latency="realistic", time_scale=0.03, seed=seed) as lab:
        guest.world = lab.world
        cloud = cloud_for(lab)
        p, _ = workflows.make_plan(cloud, REGION, instance_ids=None, select_all=True, vpc_id=None, tags=None,
                                   opts=Options())
        path = tmp_path / "plan.json"
        plan_mod.save(p, path)
        eips_before = _snapshot_eips(lab)
        env = _env(lab)
        # kill it a few times at random moments, then let it finish
        for _ in range(3):
            proc = subprocess.Popen(_cmd("apply", str(path), "--yes", "--output", "json", "--poll-interval", "0.05",
                                         "--parallel", str(rng.choice([1, 3, 10]))),
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.8, 3.0))  # includes ~0.7 s of interpreter and SDK start-up
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            _ = eips_before <= _snapshot_eips(lab) or pytest.fail("an EIP was lost after a kill")
        done = subprocess.run(_cmd("apply", str(path), "--yes", "--poll-interval", "0.05"), env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        _check_invariants(lab, p, eips_before, migrated=True)
        # and the same for rollback
        for _ in range(2):
            proc = subprocess.Popen(_cmd("rollback", str(path), "--yes", "--poll-interval", "0.05"), env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.8, 2.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        done = subprocess.run(_cmd("rollback", str(path), "--yes", "--poll-interval", "0.05"), env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        _check_invariants(lab, p, eips_before, migrated=False)
