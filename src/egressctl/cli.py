"""egressctl command line.

    egressctl [--profile P] [--region R] [--endpoint URL] COMMAND ...

Exit codes: 0 success; 1 some instances failed or did not verify; 2 usage, preflight or plan
errors (nothing changed).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__, iam
from . import plan as plan_mod
from .cloud import Cloud, errors
from .config import Globals
from .journal import JournalError
from .output import audit_table, emit_json, err, out, reasons_lines
from .preflight import Options
from .workflows import ApplySettings, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="egressctl: give ECS instances that have a fixed public IP the VPC's SNAT egress IP, "
                       "keeping inbound on an EIP moved to a secondary ENI (audit, plan, apply, verify, rollback).")


class Exit(Exception):
    def __init__(self, code: int, message: str = ""):
        self.code, self.message = code, message


def _globals(ctx: typer.Context) -> Globals:
    return ctx.obj


@app.callback()
def _root(
    ctx: typer.Context,
    profile: Annotated[str | None, typer.Option(help="aliyun CLI profile (~/.aliyun/config.json) [EGRESSCTL_PROFILE]")
                       ] = None,
    region: Annotated[str | None, typer.Option(help="region id, e.g. cn-hangzhou [EGRESSCTL_REGION]")] = None,
    endpoint: Annotated[str | None, typer.Option(help="http(s)://host[:port] for ECS, VPC and STS, e.g. vpclab's "
                                                      "[EGRESSCTL_ENDPOINT]")] = None,
    ecs_endpoint: Annotated[str | None, typer.Option(help="ECS only [EGRESSCTL_ECS_ENDPOINT]")] = None,
    vpc_endpoint: Annotated[str | None, typer.Option(help="VPC only [EGRESSCTL_VPC_ENDPOINT]")] = None,
    sts_endpoint: Annotated[str | None, typer.Option(help="STS only [EGRESSCTL_STS_ENDPOINT]")] = None,
    rates: Annotated[str | None, typer.Option(help="YAML file of the account's API quotas, e.g. "
                                                   "'AssociateEipAddress: 600/60' [EGRESSCTL_RATES]")] = None,
) -> None:
    try:
        ctx.obj = Globals(profile, region, endpoint, ecs_endpoint, vpc_endpoint, sts_endpoint, rates).resolved()
    except ValueError as e:
        err.print(f"egressctl: {e}")
        raise typer.Exit(2) from None


def _cloud(g: Globals, region: str | None) -> Cloud:
    if not region:
        raise Exit(2, "no region: use --region or set EGRESSCTL_REGION (or ALIBABA_CLOUD_REGION_ID)")
    return Cloud(g.settings(region))


def _run(fn: Any) -> Any:
    """Map the tool's exceptions to messages and exit codes, in one place."""
    try:
        return fn()
    except Exit as e:
        if e.message:
            err.print(f"egressctl: {e.message}")
        raise typer.Exit(e.code) from None
    except (UsageError, plan_mod.PlanError, JournalError) as e:
        err.print(f"egressctl: {e}")
        raise typer.Exit(2) from None
    except errors.AuthError as e:
        err.print(f"egressctl: {e.short()} (credentials or permissions; nothing was changed)")
        raise typer.Exit(2) from None
    except errors.CloudError as e:
        err.print(f"egressctl: the cloud refused {e.action or 'a call'}: {e.short()}")
        raise typer.Exit(1) from None


def _tags(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for v in values:
        if "=" not in v:
            raise Exit(2, f"--tag {v!r}: expected KEY=VALUE")
        k, val = v.split("=", 1)
        out[k] = val
    return out


def _ids(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [x.strip() for x in value.split(",") if x.strip()]


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def audit(
    ctx: typer.Context,
    vpc: Annotated[str | None, typer.Option(help="only this VPC")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="only instances with this tag KEY=VALUE (repeatable)")] = None,
    instances: Annotated[str | None, typer.Option(help="only these instance ids, comma separated")] = None,
    output: Annotated[str, typer.Option(help="table | json")] = "table",
) -> None:
    """Where does each instance's outbound traffic leave today, and what would migration change?"""
    from .workflows import audit as run_audit

    def go() -> None:
        g = _globals(ctx)
        cloud = _cloud(g, g.region)
        res, _, _ = run_audit(cloud, g.region or "", vpc, _tags(tag), _ids(instances))
        if output == "json":
            emit_json({"region": res.region, "instances": res.rows, "api_calls": res.calls,
                       "wall_s": res.wall_s})
        else:
            out.print(audit_table(res.rows))
            for line in reasons_lines(res.rows):
                out.print(line)
            counts: dict[str, int] = {}
            for r in res.rows:
                counts[r["action"]] = counts.get(r["action"], 0) + 1
            out.print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no instances",
                      f"({sum(res.calls.values())} API calls)")
    _run(go)


@app.command()
def plan(
    ctx: typer.Context,
    instances: Annotated[str | None, typer.Option(help="instance ids, comma separated")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every instance that can be migrated")] = False,
    vpc: Annotated[str | None, typer.Option(help="only this VPC")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="only instances with this tag KEY=VALUE")] = None,
    allow_billing_change: Annotated[bool, typer.Option(help="change subscription instances to pay-as-you-go "
                                                            "where the conversion needs it")] = False,
    allow_stop: Annotated[bool, typer.Option(help="stop and start instance types without ENI hot-plug")] = False,
    inbound_port: Annotated[list[int] | None, typer.Option(help="TCP port that must stay reachable on the EIP "
                                                                "(repeatable; default 22)")] = None,
    guest: Annotated[str, typer.Option(help="cloud-assistant | ssh | print")] = "cloud-assistant",
    order: Annotated[str, typer.Option(help="guest-first (default: inbound is down only while the EIP moves) | "
                                            "seed (the seed's order, guest routing after the move: for "
                                            "comparisons)")] = "guest-first",
    out_file: Annotated[Path, typer.Option("-o", "--out", help="where to write the plan")] = Path("plan.json"),
    output: Annotated[str, typer.Option(help="text | json")] = "text",
) -> None:
    """Check every precondition and write a plan file; nothing changes in the cloud."""
    from .workflows import make_plan

    def go() -> None:
        if guest not in ("cloud-assistant", "ssh", "print"):
            raise Exit(2, f"--guest {guest!r}: expected cloud-assistant, ssh or print")
        if instances and all_:
            raise Exit(2, "give --instances or --all, not both")
        g = _globals(ctx)
        cloud = _cloud(g, g.region)
        if order not in ("guest-first", "seed"):
            raise Exit(2, f"--order {order!r}: expected guest-first or seed")
        opts = Options(allow_billing_change, allow_stop, tuple(inbound_port or (22,)), guest, order)
        p, _ = make_plan(cloud, g.region or "", instance_ids=_ids(instances), select_all=all_, vpc_id=vpc,
                         tags=_tags(tag), opts=opts)
        plan_mod.save(p, out_file)
        if output == "json":
            emit_json({"plan": str(out_file), "plan_id": p.plan_id, "instances": [i.instance_id for i in p.instances],
                       "excluded": [e.model_dump() for e in p.excluded]})
            return
        out.print(f"plan {p.plan_id} for account {p.account_id}, region {p.region}: {len(p.instances)} to migrate "
                  f"-> {out_file}")
        for i in p.instances:
            out.print(f"  migrate {i.instance_id} {i.name}: {' -> '.join(i.steps)}")
            out.print(f"          egress {i.public_ip} -> SNAT {i.expected.egress_ip}; inbound stays {i.public_ip}")
        for e in p.excluded:
            out.print(f"  {e.action:7} {e.instance_id} {e.name}: {'; '.join(e.reasons) or 'already consistent'}")
    _run(go)


def _load_plan(path: Path) -> plan_mod.Plan:
    return plan_mod.load(path)


class _Progress:
    """Per-step progress bars for people; the engine calls ``event`` from its coordinator thread."""

    def __init__(self, p: plan_mod.Plan, json_lines: bool, mode: str):
        self.json_lines = json_lines
        self.lock = threading.Lock()
        self.progress = None
        if not json_lines:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from .engine import sequence

            steps: list[str] = []
            for i in p.instances:
                for s in sequence(i, mode):
                    if s not in steps:
                        steps.append(s)
            if mode == "apply":
                steps.sort(key=plan_mod.STEP_ORDER.index)
            self.totals = {s: sum(1 for i in p.instances if s in sequence(i, mode)) for s in steps}
            self.progress = Progress(TextColumn("{task.description:>14}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=err, transient=False)
            self.tasks = {s: self.progress.add_task(s, total=self.totals[s]) for s in steps}

    def __enter__(self) -> _Progress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def event(self, e: dict[str, Any]) -> None:
        if self.json_lines:
            with self.lock:
                emit_json(e)
            return
        if e["event"] == "step_done" and self.progress is not None and e["step"] in self.tasks:
            self.progress.advance(self.tasks[e["step"]])
        elif e["event"] in ("instance_failed", "instance_paused", "stopping"):
            msg = e.get("error") or e.get("reason") or f"{e.get('failures')} failures: no new instances start"
            err.print(f"{e['event'].replace('_', ' ')}: {e['instance_id']} at {e['step']}: {msg}")


def _summary(summary: Any, output: str, what: str, cloud: Cloud) -> int:
    code = 0 if summary.ok else 1
    stats = cloud.stats.snapshot()
    if output == "json":
        emit_json({"event": "summary", "done": summary.done, "failed": summary.failed, "paused": summary.paused,
                   "not_started": summary.not_started, "aborted": summary.aborted, "wall_s": round(summary.wall_s, 2),
                   "api": stats, "exit_code": code})
    else:
        throttled = sum(stats["throttled"].values())
        out.print(f"{what}: {len(summary.done)} done, {len(summary.failed)} failed, {len(summary.paused)} paused, "
                  f"{len(summary.not_started)} not started ({summary.wall_s:.1f} s, "
                  f"{sum(stats['calls'].values())} API calls, {throttled} throttled and retried)")
        for iid, why in summary.failed.items():
            out.print(f"  failed  {iid}: {why}")
        for iid, why in summary.paused.items():
            out.print(f"  paused  {iid}: {why}")
        if summary.not_started:
            out.print(f"  not started: {', '.join(summary.not_started)}")
        if summary.aborted:
            out.print(f"  aborted: {summary.aborted}")
    return code


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise Exit(2, "not a terminal: add --yes to confirm")
    if not typer.confirm(question, default=False, err=True):
        raise Exit(2, "cancelled; nothing changed")


@app.command()
def apply(
    ctx: typer.Context,
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="the plan file from `egressctl plan`")],
    parallel: Annotated[int | None, typer.Option(help="instances in flight at once (default: from the rate "
                                                      "limits)")] = None,
    max_failures: Annotated[int, typer.Option(help="after more failures than this, start no new instances")] = 0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    output: Annotated[str, typer.Option(help="text | json (JSON lines)")] = "text",
    instances: Annotated[str | None, typer.Option(help="only these instances of the plan")] = None,
    guest_done: Annotated[str | None, typer.Option(help="instances whose guest script you ran yourself (--guest "
                                                        "print)")] = None,
    poll_interval: Annotated[float, typer.Option(help="longest wait between batched status checks, seconds")
                             ] = 1.0,
    ssh_user: Annotated[str, typer.Option(help="--guest ssh: user")] = "root",
    ssh_key: Annotated[str | None, typer.Option(help="--guest ssh: private key file")] = None,
) -> None:
    """Execute a plan: resumable (run it again after any interruption), one run per plan at a time."""
    def go() -> int:
        g = _globals(ctx)
        p = _load_plan(plan_file)
        cloud = _cloud(g, g.region or p.region)
        from .workflows import check_plan_target, run_engine

        check_plan_target(cloud, p, g.region)
        n = len(_ids(instances) or p.instances)
        _confirm(yes, f"apply plan {p.plan_id} to {n} instance(s) in {p.region}? Inbound to each EIP is down for a "
                      "few seconds during its cut-over")
        s = ApplySettings(parallel=parallel, max_failures=max_failures, poll_interval=poll_interval,
                          guest_done=set(_ids(guest_done) or []), ssh_user=ssh_user, ssh_key=ssh_key,
                          instances=_ids(instances))
        with _Progress(p, output == "json", "apply") as prog:
            summary = run_engine(cloud, p, plan_file, s, "apply", prog.event)
        return _summary(summary, output, "apply", cloud)
    raise typer.Exit(_run(go))


@app.command()
def verify(
    ctx: typer.Context,
    plan_file: Annotated[Path | None, typer.Argument(metavar="[PLAN]", help="verify the plan's instances")] = None,
    instances: Annotated[str | None, typer.Option(help="or these instance ids")] = None,
    echo_url: Annotated[str, typer.Option(help="echo service that answers the caller's IP (seen from the guest)")
                        ] = "https://myip.ipip.net",
    port: Annotated[list[int] | None, typer.Option(help="TCP port to connect to on each EIP (repeatable; default: "
                                                        "the plan's inbound ports, else 22)")] = None,
    skip: Annotated[str | None, typer.Option(help="checks to skip: control, egress, inbound (comma separated)")
                    ] = None,
    guest: Annotated[str | None, typer.Option(help="how to run the egress probe: cloud-assistant | ssh (default: "
                                                   "the plan's runner, else cloud-assistant)")] = None,
    output: Annotated[str, typer.Option(help="table | json")] = "table",
    timeout: Annotated[float, typer.Option(help="seconds to wait for the guests' answers")] = 180.0,
    ssh_user: Annotated[str, typer.Option(help="--guest ssh: user")] = "root",
    ssh_key: Annotated[str | None, typer.Option(help="--guest ssh: private key file")] = None,
) -> None:
    """Prove the result: control plane, the egress IP seen from inside each guest, and a TCP connection
    from here to each EIP.  Exit 0 only when every check that ran passed."""
    from .guest.probe import validate_url
    from .guest.runners import CloudAssistantRunner, SshRunner
    from .verify import CHECKS
    from .verify import verify as run_verify

    def go() -> int:
        g = _globals(ctx)
        p = _load_plan(plan_file) if plan_file else None
        ids = _ids(instances) or ([i.instance_id for i in p.instances] if p else None)
        if not ids:
            raise Exit(2, "say what to verify: a PLAN or --instances")
        skipped = set(_ids(skip) or [])
        if skipped - set(CHECKS):
            raise Exit(2, f"--skip: unknown check(s) {', '.join(sorted(skipped - set(CHECKS)))}")
        try:
            validate_url(echo_url)
        except ValueError as e:
            raise Exit(2, str(e)) from None
        region = g.region or (p.region if p else None)
        cloud = _cloud(g, region)
        kind = guest or (p.options.guest if p else "cloud-assistant")
        runner = None
        if kind == "cloud-assistant":
            runner = CloudAssistantRunner(cloud, region or "", f"egressctl-verify-{p.plan_id if p else 'adhoc'}",
                                          int(timeout))
        elif kind == "ssh":
            runner = SshRunner(ssh_user, ssh_key, timeout_s=int(timeout))
        ports = port or (p.options.inbound_ports if p else [22])
        rows = run_verify(cloud, region or "", ids, runner, echo_url=echo_url, ports=list(ports),
                          checks=tuple(c for c in CHECKS if c not in skipped), timeout_s=timeout)
        code = 0 if all(r["ok"] for r in rows) else 1
        if output == "json":
            emit_json({"instances": rows, "ok": code == 0})
            return code
        for r in rows:
            out.print(f"{'OK  ' if r['ok'] else 'FAIL'} {r['instance_id']} {r['name']}")
            for name, c in r["checks"].items():
                mark = {True: "ok", False: "FAIL", None: "skip"}[c["ok"]]
                out.print(f"       {name:8} {mark:4} {c['detail']}")
        return code
    raise typer.Exit(_run(go))


@app.command()
def rollback(
    ctx: typer.Context,
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN")],
    instances: Annotated[str | None, typer.Option(help="only these instances of the plan")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
    output: Annotated[str, typer.Option(help="text | json")] = "text",
    poll_interval: Annotated[float, typer.Option()] = 1.0,
    guest_done: Annotated[str | None, typer.Option(help="instances whose guest removal you ran yourself")] = None,
) -> None:
    """Back to "EIP on the primary NIC", guest routing removed, egressctl's ENIs detached and deleted.
    The conversion of the fixed public IP to an EIP cannot be undone: the address stays an EIP."""
    def go() -> int:
        g = _globals(ctx)
        p = _load_plan(plan_file)
        cloud = _cloud(g, g.region or p.region)
        from .workflows import check_plan_target, run_engine

        check_plan_target(cloud, p, g.region)
        _confirm(yes, f"roll back plan {p.plan_id}? The public IPs stay EIPs (a conversion cannot be undone)")
        err.print("note: the conversion of a fixed public IP to an EIP cannot be undone; each address stays an EIP, "
                  "back on its instance's primary NIC")
        s = ApplySettings(poll_interval=poll_interval, instances=_ids(instances),
                          guest_done=set(_ids(guest_done) or []), max_failures=10**6)
        with _Progress(p, output == "json", "rollback") as prog:
            summary = run_engine(cloud, p, plan_file, s, "rollback", prog.event)
        return _summary(summary, output, "rollback", cloud)
    raise typer.Exit(_run(go))


@app.command()
def status(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN")],
    output: Annotated[str, typer.Option(help="table | json")] = "table",
) -> None:
    """What the journal knows, per instance and step (no API calls)."""
    from .workflows import status as run_status

    def go() -> None:
        p = _load_plan(plan_file)
        rows = run_status(plan_file, p)
        if output == "json":
            emit_json({"plan_id": p.plan_id, "instances": rows})
            return
        from rich.table import Table

        t = Table(title=f"plan {p.plan_id}")
        for c in ("instance", "name", "status", "step", "done steps", "error"):
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(r["instance_id"], r["name"], r["status"], r["step"], ",".join(r.get("steps_done", [])),
                      r["error"])
        out.print(t)
    _run(go)


@app.command(name="iam-policy")
def iam_policy() -> None:
    """Print the minimal RAM policy (JSON) for the actions egressctl calls."""
    out.print_json(json.dumps(iam.policy()))


@app.command(name="guest-script")
def guest_script(
    mac: Annotated[str, typer.Option(help="the ENI's MAC address")],
    ip: Annotated[str, typer.Option(help="the ENI's primary private IP")],
    prefix: Annotated[int, typer.Option(help="the vSwitch's prefix length")],
    gateway: Annotated[str, typer.Option(help="the vSwitch's gateway (its broadcast address - 2)")],
    eni_id: Annotated[str | None, typer.Option(help="the ENI id (eni-...)")] = None,
    mode: Annotated[str, typer.Option(help="apply | check | remove")] = "apply",
) -> None:
    """Print the guest policy-routing script, to read or to run yourself."""
    from .guest.script import GuestRouting, render

    def go() -> None:
        if mode not in ("apply", "check", "remove"):
            raise Exit(2, f"--mode {mode!r}: expected apply, check or remove")
        try:
            routing = GuestRouting(mac=mac, ip=ip, prefix=prefix, gateway=gateway, eni_id=eni_id)
        except ValueError as e:
            raise Exit(2, str(e)) from None
        sys.stdout.write(render(routing, mode))  # type: ignore[arg-type]
    _run(go)


@app.command()
def demo(
    dataplane: Annotated[str, typer.Option(help="auto | on | off (real packets need root)")] = "auto",
    keep: Annotated[bool, typer.Option(help="keep the plan and journal")] = False,
) -> None:
    """The seed's procedure end to end against vpclab: audit, plan, apply, verify (on real packets when
    running as root), then clean up.  Exit 0 only when verification passed."""
    from .demo import run as run_demo

    raise typer.Exit(run_demo(dataplane, keep))


def main() -> None:
    app()
