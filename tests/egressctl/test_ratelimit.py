"""Client-side quotas: the file format, the bucket arithmetic (fake clock), the server's retry-after,
and the engine pacing a fleet to the lab's quotas - never throttled, and the EIP move admitted as a
pair so inbound is not left waiting for another call's quota."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from egressctl import plan as plan_mod
from egressctl import workflows
from egressctl.cloud.ratelimit import (
    DEFAULT_QUOTAS,
    Quota,
    RateLimiter,
    RatesError,
    load_quotas,
    parse_quota,
    quota_for,
)
from egressctl.config import Globals
from egressctl.preflight import Options
from vpclab import Lab
from vpclab.throttle import DEFAULT_LIMITS, Throttle

from .conftest import REGION, FakeGuest, cloud_for


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("text, quota", [("120/60", Quota(120, 60)), ("120/60(s)", Quota(120, 60)),
                                         (" 20 / 1 ", Quota(20, 1)), (600, Quota(600, 60)), ("5/0.5s", Quota(5, 0.5))])
def test_quota_formats(text: Any, quota: Quota) -> None:
    assert parse_quota(text, "x") == quota


@pytest.mark.parametrize("text", ["fast", "120", "0/60", "120/0", "-1/60", True, 0, "120/60/60", None, 1.5])
def test_bad_quota_is_refused_with_its_place(text: Any) -> None:
    with pytest.raises(RatesError, match=r"^rates\.yaml: Assoc"):
        parse_quota(text, "rates.yaml: Assoc")


def test_rates_file_overlays_the_defaults(tmp_path: Path) -> None:
    f = tmp_path / "rates.yaml"
    f.write_text("AssociateEipAddress: 600/60(s)\n'*Describe': 100/1\n")
    q = load_quotas(f)
    assert q["AssociateEipAddress"] == Quota(600, 60)
    assert quota_for(q, "DescribeInstances") == Quota(100, 1)
    assert q["UnassociateEipAddress"] == DEFAULT_QUOTAS["UnassociateEipAddress"]


@pytest.mark.parametrize("content, message", [
    ("", "expected a mapping"), ("- a\n- b\n", "expected a mapping"), ("associate eip: 1/1\n", "not an API action"),
    ("AssociateEipAddress: lots\n", "AssociateEipAddress: expected CALLS/SECONDS"), ("{{{", "not YAML")])
def test_bad_rates_file(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "rates.yaml"
    f.write_text(content)
    with pytest.raises(RatesError, match=message) as e:
        load_quotas(f)
    assert str(f) in str(e.value)


def test_missing_rates_file_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RatesError, match="cannot read"):
        Globals(rates=str(tmp_path / "nope.yaml")).resolved()
    f = tmp_path / "r.yaml"
    f.write_text("AssociateEipAddress: 240/60\n")
    monkeypatch.setenv("EGRESSCTL_RATES", str(f))
    g = Globals(region=REGION).resolved()
    assert g.settings(REGION).quotas is not None and g.settings(REGION).quotas["AssociateEipAddress"] == Quota(240)


def test_a_whole_window_at_once_then_the_quota_rate() -> None:
    clock = Clock()
    lim = RateLimiter({"*": Quota(10, 5)}, clock=clock, headroom_s=0)  # 2 calls/s, 10 at once
    assert [lim.reserve("A") for _ in range(10)] == [0.0] * 10
    waits = [lim.reserve("A") for _ in range(4)]
    assert waits == pytest.approx([0.5, 1.0, 1.5, 2.0])
    lim.refund("A")  # one promised call was not made: the next caller moves up
    assert lim.reserve("A") == pytest.approx(2.0)
    clock.t += 100  # idle: the bucket refills to one window, no more
    assert [lim.reserve("B") for _ in range(10)] == [0.0] * 10
    assert sum(lim.reserve("A") == 0.0 for _ in range(12)) == 10


def test_headroom_keeps_a_few_seconds_of_calls_spare() -> None:
    lim = RateLimiter({"*": Quota(120, 60)}, clock=Clock())
    assert lim.capacity("A") == 116  # 2 s at 2 calls/s
    assert RateLimiter({"*": Quota(2, 1)}, clock=Clock()).capacity("A") == 1  # never below one call


def test_the_servers_retry_after_is_honoured_and_the_rate_drops_once_per_burst() -> None:
    clock = Clock()
    lim = RateLimiter({"*": Quota(60, 60)}, clock=clock, headroom_s=0)
    for _ in range(30):  # one burst refuses 30 calls in flight: one signal, not 30
        lim.throttled("A", retry_after_s=3.0)
    assert lim.current_rate("A") == pytest.approx(0.75)
    assert lim.reserve("A") >= 3.0
    clock.t += 1.0  # still inside the burst (the server said 3 s)
    lim.throttled("A", retry_after_s=0.5)
    assert lim.current_rate("A") == pytest.approx(0.75)
    clock.t += 2.5  # the burst ended 0.5 s ago: the rate climbs back (a tenth of the quota per second)
    assert lim.current_rate("A") == pytest.approx(0.8)
    lim.throttled("A", retry_after_s=0.1)  # a new burst
    assert lim.current_rate("A") == pytest.approx(0.6)
    for _ in range(20):  # bursts one after another: never below an eighth of the quota
        clock.t += 1.0
        lim.throttled("A", retry_after_s=0.1)
    assert lim.current_rate("A") == pytest.approx(1 / 8)
    clock.t += 100  # throttling stopped: back to the quota within RECOVER_S, never above
    assert lim.current_rate("A") == pytest.approx(1.0)


def test_the_lab_and_egressctl_defaults_agree_where_the_cloud_publishes() -> None:
    for action in ("ConvertNatPublicIpToEip", "CreateNetworkInterface", "AssociateEipAddress",
                   "UnassociateEipAddress", "DescribeEipAddresses"):
        assert DEFAULT_QUOTAS[action].calls == DEFAULT_LIMITS[action], action
        assert DEFAULT_QUOTAS[action].window_s == 60
    lab = Throttle()
    for action in ("DescribeInstances", "DescribeNetworkInterfaces", "DescribeInvocations", "RunCommand",
                   "AttachNetworkInterface"):  # unpublished: egressctl's belief never exceeds the lab's
        assert quota_for(DEFAULT_QUOTAS, action).rate <= lab.rate(action), action


FLEET = {
    "region": REGION, "public_ip_pools": ["198.18.0.0/15"],
    "vpcs": [{
        "name": "v", "cidr": "10.0.0.0/16",
        "vswitches": [{"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.0.1.0/24"},
                      {"name": "n", "zone": "cn-hangzhou-h", "cidr": "10.0.2.0/24"}],
        "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
        "nat_gateways": [{"name": "ngw", "vswitch": "n", "snat": [{"vswitch": "a"}]}],
        "instances": [{"name": "web", "vswitch": "a", "security_groups": ["sg"], "count": 16, "public_ip": "auto"}],
    }],
}


def _plan_all(cloud: Any, tmp_path: Path) -> tuple[plan_mod.Plan, Path]:
    p, _ = workflows.make_plan(cloud, REGION, instance_ids=None, select_all=True, vpc_id=None, tags=None,
                               opts=Options())
    path = tmp_path / "plan.json"
    plan_mod.save(p, path)
    return p, path


def test_fleet_paced_to_the_quotas_is_never_throttled_and_the_eip_move_is_paired(tmp_path: Path) -> None:
    """Unassociate is cheap (50/s), Associate is scarce (4/s, 2 at once).  Taking the EIP off an
    instance without an Associate token in hand would leave it without inbound until one frees up;
    the engine reserves both, so at most ~2 EIPs are ever off their instances at once."""
    limits = {"AssociateEipAddress": 2, "UnassociateEipAddress": 25, "*": 1000}
    profile = tmp_path / "throttle.yaml"
    profile.write_text(f"window_s: 0.5\nlimits: {limits}\n")
    calls: list[tuple[str, float]] = []
    lock = threading.Lock()

    def record(action: str, akid: str, region: str) -> None:
        with lock:
            calls.append((action, time.monotonic()))
        return None

    guest = FakeGuest()
    with Lab(FLEET, executor=guest, throttle=str(profile), faults=record) as lab:
        guest.world = lab.world
        cloud = cloud_for(lab, quotas={k: Quota(v, 0.5) for k, v in limits.items()})
        p, path = _plan_all(cloud, tmp_path)
        summary = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), "apply")
        assert summary.ok, summary
        assert lab.throttle.denied == 0, "egressctl went faster than the lab's quotas"
        assert sum(cloud.stats.throttled.values()) == 0
    moves = [(a, t) for a, t in calls if a in ("UnassociateEipAddress", "AssociateEipAddress")]
    assert [a for a, _ in moves].count("AssociateEipAddress") == 16
    off, worst = 0, 0
    for action, _ in moves:
        off += 1 if action == "UnassociateEipAddress" else -1
        worst = max(worst, off)
    assert worst <= 3, f"{worst} EIPs were off their instances at once (Associate's quota allows 2 at a time)"
    assoc = [t for a, t in moves if a == "AssociateEipAddress"]
    # 16 calls at 4/s with 2 at once: the last cannot come before (16 - 2) / 4 s after the first
    assert assoc[-1] - assoc[0] >= (16 - 2) / 4 - 0.2


def test_instances_waiting_for_a_scarce_quota_hold_no_worker(tmp_path: Path) -> None:
    """One worker thread, the EIP move limited to 1 call/s, ENI attachments that take 0.05 to 1.95 s:
    instances queued for the move wait on timers, not in threads, so the one worker stays free for
    the instances still attaching (no head-of-line blocking behind the queue)."""
    from egressctl import journal
    from egressctl.engine import Engine, EngineOptions

    limits = {"AssociateEipAddress": 1, "UnassociateEipAddress": 1, "*": 1000}
    latency = tmp_path / "latency.yaml"
    latency.write_text("operations: {eni.attach: {base: 1.0, jitter: 0.95}}\n")
    calls: list[tuple[str, float]] = []

    def record(action: str, akid: str, region: str) -> None:
        calls.append((action, time.monotonic()))
        return None

    guest = FakeGuest()
    with Lab(FLEET, executor=guest, faults=record, latency=str(latency), seed=3) as lab:
        guest.world = lab.world
        cloud = cloud_for(lab, quotas={k: Quota(v, 1.0) for k, v in limits.items()})
        p, path = _plan_all(cloud, tmp_path)
        jpath, _ = journal.paths_for(path)
        j = journal.Journal(jpath, p.plan_id, p.checksum, create=True)
        try:
            eng = Engine(cloud, p, j, workflows.runner_for(cloud, p, workflows.ApplySettings(), path),
                         EngineOptions(poll_interval=0.1, workers=1))
            summary = eng.run([i.instance_id for i in p.instances])
        finally:
            j.close()
        assert summary.ok, summary
    guests = [t for a, t in calls if a == "RunCommand"]
    assoc = sorted(t for a, t in calls if a == "AssociateEipAddress")
    assert len(assoc) == 16
    # the moves waited ~15 s for their quota, all of it on timers: no thread slept in the limiter
    assert assoc[-1] - assoc[0] >= 14
    assert cloud.limiter.slept_s < 0.5, f"worker threads slept {cloud.limiter.slept_s:.1f} s waiting for tokens"
    # so the instances still attaching were not held up: every guest step ran before the 6th move
    assert max(guests) < assoc[5], "instances waited for a worker held by the queue for the EIP move"
