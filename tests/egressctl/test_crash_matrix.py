"""The crash matrix (issue 6): for every mutating call of the per-instance order, SIGKILL `egressctl apply`
(a) before the request is applied, (b) after it was applied and committed but before the answer reached
the client, (c) while the resource is in its transitional state; then run apply again.  The same for
`egressctl rollback`.  After each resumed run, checked against vpclab's state and the journal:

* every public address that existed before still exists (as an EIP after the conversion);
* migrated: each EIP is InUse on its own instance's tool ENI, exactly one tool ENI per instance,
  no public IP left on the primary NIC, the instance Running (started again if egressctl stopped it);
* rolled back: each EIP is back on its instance, no tool ENI left, the instance Running;
* the journal agrees: status done / rolled_back, and its ENI and EIP ids are the lab's.

The lab runs in-process with a fault hook (``vpclab.server.FaultDecision``) that holds exactly the call
the case targets, so the kill lands at a known point: (a) ``hold_before`` + ``drop_response`` (nothing
is applied), (b) ``hold_after`` (applied, the answer held until the client is dead), (c) the call goes
through and a ``sticky`` fault keeps only that operation's transitional state for a second, while the
test polls ``lab.world`` and kills inside it.  Every other transition is instant, so the matrix is fast.

One case runs on the real data plane (root): killed during the cut-over, resumed, then egress is the
SNAT IP and inbound to the EIP connects, on real packets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from egressctl import plan as plan_mod
from egressctl import workflows
from egressctl.guest.runners import CloudAssistantRunner, GuestJob
from egressctl.guest.script import GuestRouting
from egressctl.journal import Journal, paths_for
from egressctl.preflight import Options
from vpclab import DEFAULT_ACCESS_KEY_SECRET, Lab
from vpclab.faults import Rule
from vpclab.resources.eips import Eip
from vpclab.resources.enis import Eni
from vpclab.resources.instances import Instance
from vpclab.server import FaultDecision

from .conftest import REGION, FakeGuest, cloud_for

# One instance that needs every step (subscription billed by bandwidth: billing; a burstable type
# without ENI hot-plug: stop/start around the attach), and a plain one beside it.
SCENARIO: dict[str, Any] = {
    "region": REGION,
    "vpcs": [{
        "name": "v", "cidr": "10.0.0.0/16",
        "vswitches": [{"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.0.1.0/24"},
                      {"name": "n", "zone": "cn-hangzhou-h", "cidr": "10.0.2.0/24"}],
        "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
        "nat_gateways": [{"name": "ngw", "vswitch": "n", "snat": [{"vswitch": "a"}]}],
        "instances": [
            {"name": "full", "vswitch": "a", "security_groups": ["sg"], "public_ip": "auto",
             "charge_type": "PrePaid", "internet_charge_type": "PayByBandwidth", "type": "ecs.t6-c1m1.large"},
            {"name": "plain", "vswitch": "a", "security_groups": ["sg"], "public_ip": "auto"},
        ],
    }],
}
FULL_STEPS = ["preflight", "billing", "convert", "create_eni", "stop", "attach", "start", "guest", "unassociate",
              "associate", "verify"]


@dataclass(frozen=True)
class Target:
    step: str
    action: str
    op: str | None  # the latency operation of its transitional state (None: synchronous)
    transition: str | None  # the world's pending transition while in that state


APPLY = [
    Target("billing", "ModifyInstanceChargeType", "instance.charge", "instance.charge"),
    Target("convert", "ConvertNatPublicIpToEip", "instance.convert", "instance.convert"),
    Target("create_eni", "CreateNetworkInterface", None, None),
    Target("stop", "StopInstance", "instance.stop", "instance.stopped"),
    Target("attach", "AttachNetworkInterface", "eni.attach", "eni.attached"),
    Target("start", "StartInstance", "instance.start", "instance.started"),
    Target("guest", "RunCommand", "command.deliver", "command.deliver"),
    Target("unassociate", "UnassociateEipAddress", "eip.unassociate", "eip.unassociated"),
    Target("associate", "AssociateEipAddress", "eip.associate", "eip.associated"),
]
ROLLBACK = [
    Target("move_eip_back-unassociate", "UnassociateEipAddress", "eip.unassociate", "eip.unassociated"),
    Target("move_eip_back-associate", "AssociateEipAddress", "eip.associate", "eip.associated"),
    Target("guest_remove", "RunCommand", "command.deliver", "command.deliver"),
    Target("stop", "StopInstance", "instance.stop", "instance.stopped"),
    Target("detach", "DetachNetworkInterface", "eni.detach", "eni.detached"),
    Target("start", "StartInstance", "instance.start", "instance.started"),
    Target("delete_eni", "DeleteNetworkInterface", "eni.delete", "eni.deleted"),
]
WHEN = ("before", "after", "wait")


def _cases(targets: list[Target]) -> list[Any]:
    return [pytest.param(t, when, id=f"{t.step}-{when}") for t in targets for when in WHEN
            if when != "wait" or t.op is not None]


class Gate(threading.Event):
    """An event the server waits on (``hold_before``/``hold_after``); ``reached`` says the server got there."""

    def __init__(self) -> None:
        super().__init__()
        self.reached = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.reached.set()
        return super().wait(timeout)


class Trap:
    """The lab's fault hook: once armed, the first call of ``action`` is held (or, for ``wait``, marked)."""

    def __init__(self, action: str, when: str):
        self.action, self.when = action, when
        self.armed = False
        self.gate = Gate()
        self.arrived = threading.Event()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, action: str, access_key_id: str, region: str) -> FaultDecision | None:
        with self._lock:
            self.calls[action] += 1
            if not self.armed or action != self.action or self.arrived.is_set():
                return None
            self.arrived.set()
        if self.when == "before":
            return FaultDecision(hold_before=self.gate, drop_response=True)
        if self.when == "after":
            return FaultDecision(hold_after=self.gate)
        return None

    def release(self) -> None:
        self.armed = False
        self.gate.set()


def _env(lab: Lab) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "EGRESSCTL_"))
           and "proxy" not in k.lower()}
    env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": lab.access_key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
                "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true", "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
                "EGRESSCTL_ENDPOINT": lab.endpoint, "EGRESSCTL_REGION": REGION})
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "egressctl", *args]


def _in_transition(lab: Lab, transition: str) -> bool:
    with lab.world.lock:
        return any(transition in obj.pending for table in lab.world.tables.values() for obj in table.values())


def _public_ips(lab: Lab) -> set[str]:
    with lab.world.lock:
        return {e.ip for e in lab.world.all(Eip)} | {i.public_ip for i in lab.world.all(Instance) if i.public_ip}


def _plan(lab: Lab, tmp: Path, names: list[str] | None = None) -> tuple[plan_mod.Plan, Path]:
    cloud = cloud_for(lab)
    ids = [lab.ids["instances"][n] for n in names] if names else None
    p, _ = workflows.make_plan(cloud, REGION, instance_ids=ids, select_all=ids is None, vpc_id=None, tags=None,
                               opts=Options(allow_billing_change=True, allow_stop=True))
    path = tmp / "plan.json"
    plan_mod.save(p, path)
    return p, path


def kill_at(lab: Lab, trap: Trap, target: Target, argv: list[str], tmp: Path) -> dict[str, Any]:
    """Start ``argv``, SIGKILL it at the trap; returns what was seen at the moment of the kill."""
    if trap.when == "wait":
        assert target.op is not None
        lab.faults.set([Rule("sticky", params={"ops": [target.op], "extra_s": 1.0})])
    log = (tmp / f"killed-{len(list(tmp.glob('killed-*')))}.log").open("wb")
    trap.armed = True
    proc = subprocess.Popen(argv, env=_env(lab), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seen: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            if trap.when == "wait":
                hit = trap.arrived.is_set() and _in_transition(lab, target.transition or "")
            else:
                hit = trap.gate.reached.is_set()
            if hit:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                log.close()
                pytest.fail(f"never reached {target.action} ({trap.when}); exit {proc.returncode}; calls "
                            f"{dict(trap.calls)}; output:\n{(tmp / log.name).read_text()[-3000:]}")
            time.sleep(0.002)
        proc.kill()
        proc.wait()
        seen["in_transition"] = target.transition is not None and _in_transition(lab, target.transition)
        seen["returncode"] = proc.returncode
    finally:
        trap.release()
        log.close()
        lab.faults.set([])
    return seen


def resume(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(*args, "--yes", "--output", "json", "--poll-interval", "0.05"), env=_env(lab),
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def check_invariants(lab: Lab, p: plan_mod.Plan, path: Path, public_before: set[str], migrated: bool,
                     guest: FakeGuest | None = None) -> None:
    w = lab.world
    with w.lock:
        eips = {e.ip: e for e in w.all(Eip)}
        public_after = set(eips) | {i.public_ip for i in w.all(Instance) if i.public_ip}
        assert public_before <= public_after, f"public IPs lost: {public_before - public_after}"
        assert public_after == public_before, f"addresses allocated: {public_after - public_before}"
        secondary = [e for e in w.all(Eni) if e.eni_type == "Secondary"]
        records = {}
        j = Journal(paths_for(path)[0], p.plan_id, p.checksum, create=False)
        try:
            records = {r.instance_id: r for r in j.all()}
        finally:
            j.close()
        assert set(records) == {i.instance_id for i in p.instances}
        for item in p.instances:
            iid = item.instance_id
            inst = w.get(Instance, iid)
            tool = [e for e in secondary if e.tag_dict().get("egressctl:instance") == iid]
            eip = eips.get(item.public_ip)
            rec = records[iid]
            assert eip is not None, f"{iid}: its address {item.public_ip} is not an EIP"
            assert inst.status == "Running", f"{iid} left {inst.status}"
            assert inst.public_ip == "", f"{iid} still has its fixed public IP"
            if migrated:
                assert len(tool) == 1, f"{iid}: {len(tool)} tool ENIs"
                assert (tool[0].status, tool[0].instance_id) == ("InUse", iid)
                assert (eip.status, eip.instance_type, eip.instance_id) == ("InUse", "NetworkInterface", tool[0].id)
                assert inst.eip_id == ""
                assert (rec.status, rec.step, rec.error) == ("done", "", ""), rec
                assert rec.data["eni_id"] == tool[0].id and rec.data["allocation_id"] == eip.id
                assert rec.data.get("guest_done") is True
            else:
                assert tool == [], f"{iid}: a tool ENI was left behind"
                assert (eip.status, eip.instance_type, eip.instance_id) == ("InUse", "EcsInstance", iid)
                assert inst.eip_id == eip.id and inst.eni_ids == inst.eni_ids[:1]
                assert (rec.status, rec.step, rec.error) == ("rolled_back", "", ""), rec
                assert rec.data == {"allocation_id": eip.id} and rec.generation == 2
            if guest is not None:
                modes = guest.modes(iid)
                assert "apply" in modes
                if not migrated:
                    assert modes[-1] == "remove", modes
        # nothing that egressctl did not account for
        if migrated:
            assert len(secondary) == len(p.instances)
        else:
            assert secondary == []


@pytest.fixture
def planned_lab(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    target, when = request.param

    class Case:
        pass

    case = Case()
    case.trap = Trap(target.action, when)  # type: ignore[attr-defined]
    case.guest = FakeGuest()  # type: ignore[attr-defined]
    with Lab(SCENARIO, executor=case.guest, faults=case.trap) as lab:  # type: ignore[attr-defined]
        case.guest.world = lab.world  # type: ignore[attr-defined]
        case.lab = lab  # type: ignore[attr-defined]
        case.target = target  # type: ignore[attr-defined]
        # RunCommand rows plan one instance: a guest batch of two is re-sent in another order after a crash
        # (the bug shown by test_bug_a_resent_guest_batch_keeps_its_parameters below)
        names = ["full"] if target.action == "RunCommand" else None
        case.plan, case.path = _plan(lab, tmp_path, names)  # type: ignore[attr-defined]
        assert case.plan.instance(lab.ids["instances"]["full"]).steps == FULL_STEPS  # type: ignore[attr-defined]
        case.before = _public_ips(lab)  # type: ignore[attr-defined]
        try:
            yield case
        finally:
            case.trap.release()  # type: ignore[attr-defined]


@pytest.mark.parametrize("planned_lab", [(t, w) for t in APPLY for w in WHEN if w != "wait" or t.op],
                         ids=[f"{t.step}-{w}" for t in APPLY for w in WHEN if w != "wait" or t.op],
                         indirect=True)
def test_apply_killed_then_resumed(planned_lab: Any, tmp_path: Path) -> None:
    c = planned_lab
    lab, trap, target = c.lab, c.trap, c.target
    seen = kill_at(lab, trap, target, _cmd("apply", str(c.path), "--yes", "--output", "json", "--poll-interval",
                                           "0.05"), tmp_path)
    assert seen["returncode"] == -9
    if trap.when == "wait":
        assert seen["in_transition"], "the kill missed the transitional state"
    assert c.before <= _public_ips(lab), "a public IP was lost at the kill"
    done = resume(lab, "apply", str(c.path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["event"] == "summary" and summary["exit_code"] == 0
    assert sorted(summary["done"]) == sorted(i.instance_id for i in c.plan.instances)
    check_invariants(lab, c.plan, c.path, c.before, migrated=True, guest=c.guest)
    # and a third run has nothing to do
    again = resume(lab, "apply", str(c.path))
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["exit_code"] == 0


def test_apply_killed_in_preflight_then_resumed(tmp_path: Path) -> None:
    """Preflight sends nothing that changes the cloud: killed at the first look, resumed."""
    trap = Trap("DescribeInstances", "before")
    guest = FakeGuest()
    with Lab(SCENARIO, executor=guest, faults=trap) as lab:
        guest.world = lab.world
        p, path = _plan(lab, tmp_path)
        before = _public_ips(lab)
        kill_at(lab, trap, Target("preflight", "DescribeInstances", None, None),
                _cmd("apply", str(path), "--yes", "--poll-interval", "0.05"), tmp_path)
        j = Journal(paths_for(path)[0], p.plan_id, p.checksum, create=False)
        try:
            assert {r.status for r in j.all()} <= {"pending", "running"}
        finally:
            j.close()
        done = resume(lab, "apply", str(path))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        check_invariants(lab, p, path, before, migrated=True, guest=guest)


@pytest.mark.parametrize("planned_lab", [(t, w) for t in ROLLBACK for w in WHEN],
                         ids=[f"{t.step}-{w}" for t in ROLLBACK for w in WHEN], indirect=True)
def test_rollback_killed_then_resumed(planned_lab: Any, tmp_path: Path) -> None:
    c = planned_lab
    lab, trap, target = c.lab, c.trap, c.target
    s = workflows.run_engine(cloud_for(lab), c.plan, c.path, workflows.ApplySettings(poll_interval=0.05), "apply")
    assert s.ok, s
    check_invariants(lab, c.plan, c.path, c.before, migrated=True, guest=c.guest)
    seen = kill_at(lab, trap, target, _cmd("rollback", str(c.path), "--yes", "--output", "json",
                                           "--poll-interval", "0.05"), tmp_path)
    assert seen["returncode"] == -9
    if trap.when == "wait":
        assert seen["in_transition"], "the kill missed the transitional state"
    assert c.before <= _public_ips(lab), "a public IP was lost at the kill"
    done = resume(lab, "rollback", str(c.path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["exit_code"] == 0 and sorted(summary["done"]) == sorted(i.instance_id for i in c.plan.instances)
    check_invariants(lab, c.plan, c.path, c.before, migrated=False, guest=c.guest)
    # rolled back, it can be migrated again (fresh ClientTokens: a new generation)
    again = resume(lab, "apply", str(c.path))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    with lab.world.lock:
        for item in c.plan.instances:
            eip = next(e for e in lab.world.all(Eip) if e.ip == item.public_ip)
            eni = lab.world.get(Eni, eip.instance_id)
            assert eni is not None and eni.instance_id == item.instance_id and eip.status == "InUse"


# --- found by the matrix -----------------------------------------------------------------------------------

def test_bug_a_resent_guest_batch_keeps_its_parameters() -> None:
    guest = FakeGuest()
    with Lab(SCENARIO, executor=guest) as lab:
        guest.world = lab.world
        cloud = cloud_for(lab)
        a, b = lab.ids["instances"]["full"], lab.ids["instances"]["plain"]
        rows = {a: GuestRouting(mac="00:16:3e:00:00:0a", ip="10.0.1.200", prefix=24, gateway="10.0.1.253"),
                b: GuestRouting(mac="00:16:3e:00:00:0b", ip="10.0.1.201", prefix=24, gateway="10.0.1.253")}
        tokens = {a: "egc-token-of-a", b: "egc-token-of-b"}  # deterministic per instance, as Ctx.token makes them
        results = []
        for order in ([b, a], [a, b]):  # the run that crashed after RunCommand, then the resumed run
            runner = CloudAssistantRunner(cloud, REGION, "egressctl-p-bug", 60, window_s=0.0)
            handles = [runner.start(GuestJob(i, rows[i], "apply"), tokens[i]) for i in order]
            deadline = time.monotonic() + 30
            while True:
                got = runner.poll(handles)
                if all(o is not None for o in got.values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            results.append(got)
        assert all(o is not None and o.ok for o in results[0].values()), results[0]
        assert all(o is not None and o.ok for o in results[1].values()), results[1]


# --- on real packets ---------------------------------------------------------------------------------------

def _dp_reason() -> str | None:
    from vpclab.dataplane import kernel

    return kernel.unavailable_reason()


def _gateway_mac(lab: Lab, vswitch: str) -> str:
    """The MAC of a vSwitch's gateway: the bridge in the VPC's router namespace."""
    topo = lab.dataplane.topo
    vsw = lab.ids["vswitches"][vswitch]
    vpc = next(iter(lab.ids["vpcs"].values()))
    out = subprocess.run(["ip", "-n", topo.router(vpc), "-br", "link", "show", topo.bridge(vsw)],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[2]


@pytest.mark.root
@pytest.mark.parametrize(("action", "when"), [("UnassociateEipAddress", "after"), ("AssociateEipAddress", "wait")])
def test_dataplane_apply_killed_in_the_cut_over(tmp_path: Path, action: str, when: str) -> None:
    reason = _dp_reason()
    if reason is not None:
        pytest.skip(f"data plane unavailable: {reason}")
    from tests.vpclab.dataplane.conftest import Host, lab_namespaces

    target = next(t for t in APPLY if t.action == action)
    trap = Trap(action, when)
    lab = Lab(SCENARIO, faults=trap, dataplane="on")
    lab.start()
    prefix = lab.dataplane.prefix
    try:
        host = Host(lab)
        p, path = _plan(lab, tmp_path, ["plain"])
        item = p.instances[0]
        before = _public_ips(lab)
        gateway = _gateway_mac(lab, "a")
        assert host.egress("plain") == item.public_ip  # before: its own fixed public IP
        assert "plain" in (host.inbound(item.public_ip) or "")
        kill_at(lab, trap, target, _cmd("apply", str(path), "--yes", "--poll-interval", "0.05"), tmp_path)
        # killed mid cut-over: the address is off the instance and not yet (or not answering) on the ENI
        assert host.inbound(item.public_ip, timeout=1.0) is None
        done = resume(lab, "apply", str(path))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        lab.dataplane.wait_idle()
        check_invariants(lab, p, path, before, migrated=True)
        if _gateway_mac(lab, "a") != gateway:
            # the vpclab bug of test_bug_vswitch_gateway_mac_changes_when_an_eni_is_plugged bit: the guest still
            # has the gateway's old MAC; forget it so that this test checks what it is about
            host.sh("plain", "ip", "neigh", "flush", "all")
        assert host.egress("plain") == item.expected.egress_ip  # egress = the SNAT IP
        banner = host.inbound(item.public_ip)  # inbound through the EIP, now on the ENI
        assert banner is not None and "plain" in banner and item.instance_id in banner
    finally:
        trap.release()
        lab.stop()
    assert not lab_namespaces(prefix), "namespaces left behind"


@pytest.mark.root
def test_bug_vswitch_gateway_mac_changes_when_an_eni_is_plugged() -> None:
    reason = _dp_reason()
    if reason is not None:
        pytest.skip(f"data plane unavailable: {reason}")
    from alibabacloud_ecs20140526 import models as em

    from tests.vpclab.dataplane.conftest import Host

    with Lab(SCENARIO, dataplane="on") as lab:
        host = Host(lab)
        cloud = cloud_for(lab)
        plain = lab.ids["instances"]["plain"]
        eni = cloud.ecs("CreateNetworkInterface", em.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=lab.ids["vswitches"]["a"],
            security_group_id=lab.ids["security_groups"]["sg"])).network_interface_id
        gateway = _gateway_mac(lab, "a")
        assert host.egress("full")  # the neighbour has the gateway's MAC in its ARP cache
        # each plug adds a port with a random MAC: 30 tries make a lower one all but certain (1 - (2/3)^30)
        for _ in range(30):
            for act, want in (("AttachNetworkInterface", "InUse"), ("DetachNetworkInterface", "Available")):
                cls = getattr(em, act + "Request")
                cloud.ecs(act, cls(region_id=REGION, instance_id=plain, network_interface_id=eni))
                deadline = time.monotonic() + 10
                while lab.world.get(Eni, eni).status != want:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                lab.dataplane.wait_idle()
                assert _gateway_mac(lab, "a") == gateway, "the vSwitch gateway's MAC changed"
        assert host.egress("full")
