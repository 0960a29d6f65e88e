"""The commands as functions (the CLI only parses options and renders what these return)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import egress, inventory, journal, preflight
from . import plan as plan_mod
from .cloud import Cloud
from .egress import Analysis
from .engine import Engine, EngineOptions, RunSummary
from .guest.runners import CloudAssistantRunner, GuestRunner, PrintRunner, SshRunner


class UsageError(Exception):
    """Bad input: exit code 2, nothing changed."""


@dataclass
class AuditResult:
    region: str
    rows: list[dict[str, Any]]
    calls: dict[str, int]
    wall_s: float


def audit(cloud: Cloud, region: str, vpc_id: str | None = None, tags: dict[str, str] | None = None,
          instance_ids: list[str] | None = None, opts: preflight.Options | None = None) -> tuple[AuditResult,
                                                                                                 inventory.Inventory,
                                                                                                 list[Analysis]]:
    t0 = time.monotonic()
    before = dict(cloud.stats.calls)
    inv = inventory.read(cloud, region, vpc_id, tags, instance_ids)
    analyses = [egress.analyze(inv, i) for i in inv.instances.values()]
    movers = [a.instance.instance_id for a in analyses if a.action == "migrate" and a.instance.os_type == "linux"
              and a.instance.status == "Running"]
    if movers:
        inventory.read_assistant(cloud, inv, movers)
    opts = opts or preflight.Options()
    for a in analyses:
        if a.action == "migrate":
            blocks = preflight.check(inv, a, opts)
            if blocks:
                a.action = "blocked"
                a.reasons = blocks
    calls = {k: v - before.get(k, 0) for k, v in cloud.stats.calls.items() if v - before.get(k, 0)}
    rows = [a.to_dict() for a in sorted(analyses, key=lambda a: (a.instance.vpc_id, a.instance.private_ip))]
    return AuditResult(region, rows, calls, round(time.monotonic() - t0, 3)), inv, analyses


def account_of(cloud: Cloud) -> str:
    return str(cloud.caller_identity().account_id)


def make_plan(cloud: Cloud, region: str, *, instance_ids: list[str] | None, select_all: bool, vpc_id: str | None,
              tags: dict[str, str] | None, opts: preflight.Options) -> tuple[plan_mod.Plan, list[Analysis]]:
    if not instance_ids and not select_all:
        raise UsageError("say which instances: --instances ID,... or --all")
    account = account_of(cloud)
    _, inv, analyses = audit(cloud, region, vpc_id, tags, instance_ids if instance_ids else None, opts)
    by_id = {a.instance.instance_id: a for a in analyses}
    problems = []
    if instance_ids:
        for iid in instance_ids:
            a = by_id.get(iid)
            if a is None:
                problems.append(f"{iid}: no such instance in region {region}"
                                + (f" and VPC {vpc_id}" if vpc_id else ""))
    candidates, blocked = [], {}
    for a in analyses:
        iid = a.instance.instance_id
        if a.action == "migrate":
            candidates.append(iid)
        elif a.action == "blocked" and a.state in ("fixed_ip", "eip_primary"):
            blocked[iid] = [r.text() for r in a.reasons]
            if instance_ids:
                problems.append(f"{iid} ({a.instance.name}): " + "; ".join(blocked[iid]))
    if problems:
        raise UsageError("cannot plan:\n  " + "\n  ".join(problems))
    return plan_mod.build(inv, analyses, candidates, opts, account, blocked), analyses


def check_plan_target(cloud: Cloud, p: plan_mod.Plan, region: str | None) -> None:
    if region and region != p.region:
        raise UsageError(f"the plan is for region {p.region}, but --region/EGRESSCTL_REGION says {region}")
    account = account_of(cloud)
    if account != p.account_id:
        raise UsageError(f"the plan was made for account {p.account_id}, but these credentials belong to account "
                         f"{account}")


@dataclass
class ApplySettings:
    parallel: int | None = None
    max_failures: int = 0
    poll_interval: float = 1.0
    guest_done: set[str] = field(default_factory=set)
    print_dir: Path | None = None
    ssh_user: str = "root"
    ssh_key: str | None = None
    guest_timeout_s: int = 180
    instances: list[str] | None = None


def runner_for(cloud: Cloud, p: plan_mod.Plan, s: ApplySettings, plan_path: Path) -> GuestRunner:
    kind = p.options.guest
    if kind == "cloud-assistant":
        return CloudAssistantRunner(cloud, p.region, f"egressctl-{p.plan_id}", s.guest_timeout_s)
    if kind == "ssh":
        return SshRunner(s.ssh_user, s.ssh_key, timeout_s=s.guest_timeout_s)
    return PrintRunner(s.print_dir or plan_path.with_name(plan_path.name + ".guest"))


def run_engine(cloud: Cloud, p: plan_mod.Plan, plan_path: Path, s: ApplySettings, mode: str,
               on_event: Any = None, runner: GuestRunner | None = None) -> RunSummary:
    jpath, lpath = journal.paths_for(plan_path)
    ids = s.instances or [i.instance_id for i in p.instances]
    unknown = [i for i in ids if i not in {x.instance_id for x in p.instances}]
    if unknown:
        raise UsageError(f"not in the plan: {', '.join(unknown)}")
    with journal.RunLock(lpath, mode):
        j = journal.Journal(jpath, p.plan_id, p.checksum, create=(mode == "apply"))
        try:
            if mode == "rollback":
                known = {r.instance_id for r in j.all()}
                ids = [i for i in ids if i in known]
            eng = Engine(cloud, p, j, runner or runner_for(cloud, p, s, plan_path),
                         EngineOptions(parallel=s.parallel, max_failures=s.max_failures,
                                       poll_interval=s.poll_interval, guest_timeout_s=float(s.guest_timeout_s) + 60),
                         mode=mode, on_event=on_event, guest_done=s.guest_done)
            return eng.run(ids)
        finally:
            j.close()


def status(plan_path: Path, p: plan_mod.Plan) -> list[dict[str, Any]]:
    jpath, _ = journal.paths_for(plan_path)
    if not jpath.exists():
        return [{"instance_id": i.instance_id, "name": i.name, "status": "not applied", "step": "", "error": "",
                 "steps": i.steps} for i in p.instances]
    j = journal.Journal(jpath, p.plan_id, p.checksum, create=False)
    try:
        recs = {r.instance_id: r for r in j.all()}
        rows = []
        for i in p.instances:
            r = recs.get(i.instance_id)
            done_steps = [e["step"] for e in j.events(i.instance_id) if e["kind"] == "done"]
            rows.append({"instance_id": i.instance_id, "name": i.name,
                         "status": r.status if r else "not applied", "step": r.step if r else "",
                         "error": r.error if r else "", "generation": r.generation if r else 1,
                         "eni_id": (r.data.get("eni_id") if r else None),
                         "allocation_id": (r.data.get("allocation_id") if r else None),
                         "steps_done": done_steps, "steps": i.steps})
        return rows
    finally:
        j.close()
