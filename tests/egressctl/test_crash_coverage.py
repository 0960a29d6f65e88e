"""A guard for the crash matrix (test_crash_matrix.py): which mutating API call each step makes is derived
at run time - a clean apply and rollback run with a lab fault hook that records every call together with
the step the journal says the instance is in - and every (step, call) found must have its crash cases.
So a new step, a new call or a changed order (plan.STEP_ORDER, steps.py) shows up here as a missing case,
with the step and the call named, instead of silently leaving a crash point untested.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from egressctl import engine, journal, workflows
from egressctl import plan as plan_mod
from egressctl.preflight import Options
from vpclab import Lab

from .conftest import REGION, FakeGuest, cloud_for

# one instance per variant of the per-instance order: plain, billing change first, no ENI hot-plug
SCENARIO: dict[str, Any] = {
    "region": REGION,
    "vpcs": [{
        "name": "v", "cidr": "10.40.0.0/16",
        "vswitches": [{"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.40.1.0/24"},
                      {"name": "n", "zone": "cn-hangzhou-h", "cidr": "10.40.2.0/24"}],
        "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22", "source": "0.0.0.0/0"}]}],
        "nat_gateways": [{"name": "ngw", "vswitch": "n", "eips": [{"ip": "198.51.100.1"}], "snat": [{"vswitch": "a"}]}],
        "instances": [
            {"name": "plain", "vswitch": "a", "security_groups": ["sg"], "public_ip": "auto"},
            {"name": "prepaid", "vswitch": "a", "security_groups": ["sg"], "public_ip": "auto", "bandwidth_out": 10,
             "charge_type": "PrePaid", "internet_charge_type": "PayByBandwidth"},
            {"name": "small", "vswitch": "a", "security_groups": ["sg"], "public_ip": "auto",
             "type": "ecs.t6-c1m1.large"},
        ],
    }],
}
READ_ONLY = ("Describe", "List", "Get")


def journal_state(path: Path, instance_id: str) -> tuple[str, str] | None:
    """(status, step) of an instance, read from the journal the egressctl run writes (it commits the step
    before the step sends anything)."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            row = db.execute("SELECT status, step FROM instances WHERE instance_id=?", (instance_id,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return (row[0], row[1]) if row else None


class Recorder:
    """A fault hook that injects nothing: it notes (mode, step, action) for every mutating call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.target: tuple[Path, str] | None = None
        self._lock = threading.Lock()

    def __call__(self, action: str, access_key_id: str, region: str) -> None:
        if self.target is None or action.startswith(READ_ONLY):
            return None
        state = journal_state(*self.target)
        mode = {"running": "apply", "rolling_back": "rollback"}.get(state[0] if state else "", "?")
        with self._lock:
            self.calls.append((mode, state[1] if state else "", action))
        return None


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, list[str]], Recorder]]:
    """Every plan's steps (by instance name) and the recorded calls of a clean apply + rollback of each."""
    tmp = tmp_path_factory.mktemp("coverage")
    rec = Recorder()
    guest = FakeGuest()
    with Lab(SCENARIO, executor=guest, faults=rec) as lab:
        guest.world = lab.world
        cloud = cloud_for(lab)
        steps: dict[str, list[str]] = {}
        for name, iid in lab.ids["instances"].items():
            p, _ = workflows.make_plan(cloud, REGION, instance_ids=[iid], select_all=False, vpc_id=None, tags=None,
                                       opts=Options(allow_billing_change=True, allow_stop=True))
            path = tmp / f"{name}.json"
            plan_mod.save(p, path)
            steps[name] = list(p.instances[0].steps)
            rec.target = (journal.paths_for(path)[0], iid)
            for mode in ("apply", "rollback"):
                s = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.05), mode)
                assert s.ok, (name, mode, s)
            rec.target = None
        yield steps, rec


def _crash_targets() -> dict[str, set[str]]:
    from . import test_crash_matrix as cm

    return {"apply": {t.action for t in cm.APPLY}, "rollback": {t.action for t in cm.ROLLBACK}}


def test_the_scenario_exercises_every_step(recorded: tuple[dict[str, list[str]], Recorder]) -> None:
    steps, rec = recorded
    planned = {s for seq in steps.values() for s in seq}
    assert planned == set(plan_mod.STEP_ORDER), f"steps no instance takes: {set(plan_mod.STEP_ORDER) - planned}"
    seen = {(m, s) for m, s, _ in rec.calls}
    assert ("?", "") not in seen, "a mutating call outside any step"


@pytest.mark.parametrize("mode", ["apply", "rollback"])
def test_every_mutating_call_of_every_step_has_crash_cases(recorded: tuple[dict[str, list[str]], Recorder],
                                                           mode: str) -> None:
    _, rec = recorded
    by_step: dict[str, list[str]] = {}
    for m, step, action in rec.calls:
        if m == mode and action not in by_step.setdefault(step, []):
            by_step[step].append(action)
    known = set(plan_mod.STEP_ORDER) if mode == "apply" else set(engine.sequence(_item(stop=True), "rollback"))
    assert set(by_step) <= known, f"calls recorded in unknown steps: {set(by_step) - known}"
    targets = _crash_targets()[mode]
    missing = {(step, a) for step, actions in by_step.items() for a in actions if a not in targets}
    print(f"\n{mode}: mutating calls per step (derived): {by_step}")
    assert not missing, f"{mode}: no crash case for these (step, call) pairs: {sorted(missing)}"
    # and every crash case still targets a call that the steps make
    stale = targets - {a for actions in by_step.values() for a in actions}
    assert not stale, f"{mode}: crash cases for calls no step makes any more: {sorted(stale)}"


def _item(stop: bool) -> Any:
    """The smallest stand-in for a plan item that engine.sequence() needs for the rollback order."""
    class Item:
        steps = list(plan_mod.STEP_ORDER)
        stop_for_attach = stop

    return Item()
