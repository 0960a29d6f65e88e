"""``egressctl demo``: the seed's procedure end to end against vpclab, on real packets when the
machine allows it (root + network namespaces), and honest about it when not.

It starts ``vpclab serve`` on scenarios/seed.yaml, then runs audit → plan → apply → verify exactly as
a user would against the cloud (over HTTP, through the SDK), measures egress and inbound before and
after from the lab's operator host, prints the results, exits 0 only when verification passed, and
stops the lab (which removes everything it created).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.text import Text

from . import plan as plan_mod
from . import workflows
from .cloud import Cloud, CloudSettings
from .output import out
from .preflight import Options

# vpclab's documented, fake default key pair (README): the demo uses the lab only
LAB_KEY_ID = "LTAI5tVpcLabDefault0001"
LAB_KEY_SECRET = "vpclab-default-secret-not-for-any-cloud"


def _scenario() -> Path:
    here = Path(__file__).resolve()
    for cand in (here.parents[2] / "scenarios" / "seed.yaml", Path.cwd() / "scenarios" / "seed.yaml"):
        if cand.is_file():
            return cand
    raise FileNotFoundError("scenarios/seed.yaml not found (run the demo from the repository)")


def _lab_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
           and not k.startswith("ALIBABA_CLOUD_")}
    env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": LAB_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": LAB_KEY_SECRET,
                "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true", "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true"})
    return env


def _verify_from_operator(ready: dict[str, Any], plan_path: Path, skip: str = "") -> dict[str, Any]:
    """`egressctl verify` run *on the lab's operator host*: its inbound TCP check is a real
    connection from the internet side to each EIP, and the API is reachable there too."""
    argv = [sys.executable, "-m", "egressctl", "--endpoint", ready["operator_endpoint"], "--region",
            ready["region_id"], "verify", str(plan_path), "--echo-url", ready["echo_url"], "--output", "json",
            "--timeout", "60"]
    if skip:
        argv += ["--skip", skip]
    cmd = [sys.executable, "-m", "vpclab", "exec", "--lab", ready["lab"], "operator", "--", *argv]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_lab_env(), timeout=300)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"ok": False, "error": (p.stderr or p.stdout).strip()[-800:], "instances": []}


def _show(title: str, result: dict[str, Any]) -> None:
    out.print(title, style="bold")
    if result.get("error"):
        out.print(f"  verify could not run: {result['error']}")
    for r in result.get("instances", []):
        c = r["checks"]
        eg = c.get("egress", {})
        inb = c.get("inbound", {})
        banner = next(iter(inb.get("ports", {}).values()), {}).get("banner", "")
        reached = {True: f"OK ({banner[:40]})", False: "FAIL", None: "skip"}[inb.get("ok")]
        out.print(f"  {r['name']:8} egress seen from the guest: {eg.get('egress_ip', '-')!s:15} "
                  f"(SNAT IPs {', '.join(eg.get('expected') or []) or '-'})  "
                  f"inbound tcp {r.get('inbound_ip') or '-'}:22 -> {reached}")
        for name, chk in c.items():
            mark = {True: "ok", False: "FAIL", None: "skip"}[chk["ok"]]
            out.print(f"           {name:8} {mark:4} {chk['detail']}")


def run(dataplane: str = "auto", keep: bool = False) -> int:
    scenario = _scenario()
    work = Path(tempfile.mkdtemp(prefix="egressctl-demo-"))
    lab = subprocess.Popen([sys.executable, "-m", "vpclab", "serve", "--scenario", str(scenario), "--dataplane",
                            dataplane, "--latency", "realistic", "--time-scale", "0.2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_lab_env())
    try:
        line = lab.stdout.readline() if lab.stdout else ""
        if not line:
            out.print(f"vpclab did not start: {lab.stderr.read() if lab.stderr else ''}")
            return 2
        ready = json.loads(line)
        packets = ready.get("dataplane") == "on"
        out.print(f"vpclab: {ready['endpoint']} (scenario {scenario.name}), data plane: {ready.get('dataplane')}")
        if not packets:
            out.print("no data plane: the control plane is real, but no packet will prove egress or inbound, "
                      "and the guest script is only written out, not run. Run as root for the full demo.",
                      style="yellow")
        from alibabacloud_credentials import models as cred_models
        from alibabacloud_credentials.client import Client as CredentialClient

        ep = ready["endpoint"]
        cloud = Cloud(CloudSettings(region=ready["region_id"], ecs_endpoint=ep, vpc_endpoint=ep, sts_endpoint=ep),
                      credential=CredentialClient(cred_models.Config(type="access_key", access_key_id=LAB_KEY_ID,
                                                                      access_key_secret=LAB_KEY_SECRET)))
        out.print("\n1. audit", style="bold")
        res, _, _ = workflows.audit(cloud, ready["region_id"])
        for r in res.rows:
            now, after = r["egress_now"], r["egress_after"]
            out.print(f"  {r['name']:10} egress {now['kind']:8} {now['ip'] or '-':15} -> {after['kind']} "
                      f"{after['ip'] or '-':15} {r['action']}")
        targets = [r["instance_id"] for r in res.rows if r["name"] in ("web-1", "web-2")]
        out.print(Text.assemble("\n", ("2. plan", "bold"),
                                f" web-1 and web-2 ({sum(res.calls.values())} API calls for the audit)"))
        guest = "cloud-assistant" if packets else "print"
        p, _ = workflows.make_plan(cloud, ready["region_id"], instance_ids=targets, select_all=False, vpc_id=None,
                                   tags=None, opts=Options(guest=guest))
        plan_path = work / "plan.json"
        plan_mod.save(p, plan_path)
        for i in p.instances:
            out.print(f"  {i.name}: {' -> '.join(i.steps)}")
        if packets:
            before = _verify_from_operator(ready, plan_path)
            _show("\n   before (real packets, from the operator host):", before)
        out.print("\n3. apply", style="bold")
        s = workflows.ApplySettings(poll_interval=0.3, guest_done=set() if packets else set(targets),
                                    print_dir=work / "guest-scripts")
        names = {i.instance_id: i.name for i in p.instances}
        summary = workflows.run_engine(cloud, p, plan_path, s, "apply",
                                       on_event=lambda e: out.print(f"  {names.get(e['instance_id'], '?'):6} "
                                                                    f"{e['step']:11} {e.get('note') or ''}")
                                       if e["event"] == "step_done" else None)
        out.print(f"  {len(summary.done)} done, {len(summary.failed)} failed in {summary.wall_s:.1f} s; "
                  f"{cloud.stats.total()} API calls in all")
        for iid, why in summary.failed.items():
            out.print(f"  failed {iid}: {why}", style="red")
        out.print("\n4. verify", style="bold")
        if packets:
            after = _verify_from_operator(ready, plan_path)
            _show("   after (real packets, from the operator host):", after)
            ok = summary.ok and bool(after.get("ok"))
        else:
            after = _verify_from_operator_fallback(cloud, ready, plan_path)
            _show("   after (control plane only; egress and inbound NOT verified without a data plane):", after)
            ok = summary.ok and bool(after.get("ok"))
        out.print(Text.assemble("\n", ("PASS" if ok else "FAIL", "bold"), ": " + (
            "inbound still reaches each instance through its EIP, and outbound now leaves through the SNAT IP"
            if ok and packets else "control plane consistent (packets not verified: no data plane)" if ok
            else "see above")))
        if keep:
            out.print(f"plan and journal kept in {work}")
        return 0 if ok else 1
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=60)
        except subprocess.TimeoutExpired:
            lab.kill()


def _verify_from_operator_fallback(cloud: Cloud, ready: dict[str, Any], plan_path: Path) -> dict[str, Any]:
    from .verify import verify

    p = plan_mod.load(plan_path)
    rows = verify(cloud, ready["region_id"], [i.instance_id for i in p.instances], None,
                  echo_url=ready.get("echo_url") or "http://192.0.2.10/", ports=[22], checks=("control",))
    return {"ok": all(r["ok"] for r in rows), "instances": rows}
