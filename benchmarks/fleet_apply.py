"""Fleet apply against the API's own speed limit.

One command runs, each in a fresh lab (`realistic` latency profile under --time-scale, the lab's
default throttle = the cloud's published per-account quotas, docs/emulator.md):

* `egressctl apply` with its default options (its rate file is the same quotas in the lab's time,
  its --poll-interval scaled like every lab duration);
* the seed's one instance at a time (`egressctl apply --parallel 1`) on a sample, extrapolated;
* a plain-SDK template (benchmarks/template_apply.py: concurrency 10, every resource polled on its
  own every 3 s, scaled), on all N or a sample, extrapolated;

and computes the lower bound from the same profiles: max(per-instance critical path, for every
action the calls it needs beyond the quota's first window, divided by the quota's rate).  The guest
step runs on the real data plane (network namespaces; root) up to --real-max instances, above that on
a lab executor that only SIMULATES the guest's latency (benchmarks/simlab.py), labelled in every
output.  Also: `egressctl audit` of 1k and 10k instances.

    sudo .venv/bin/python benchmarks/fleet_apply.py --n 1000 [--time-scale 0.25] [--real-max 200]
        [--serial-sample 10] [--template-max 200] [--audit-sizes 1000,10000]

The last line of output is one JSON object (n, wall_s, bound_s, ratio, api_calls_per_instance, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))
from _common import clean_env, machine, median, stop  # noqa: E402

from egressctl.cloud.ratelimit import DEFAULT_QUOTAS  # noqa: E402
from vpclab import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET  # noqa: E402
from vpclab.throttle import Throttle  # noqa: E402

REGION = "cn-hangzhou"
PROFILE = yaml.safe_load((ROOT / "src/vpclab/profiles/realistic.yaml").read_text())["operations"]
GUEST_SIM_S = 1.0  # the simulated guest's time per command, before --time-scale
PER_VSWITCH = 500  # instances per vSwitch (the data plane bridges ~1000 ports per bridge)
# The per-instance calls the migration cannot do without, in order, and the transition each waits for.
CRITICAL = [("ConvertNatPublicIpToEip", "instance.convert"), ("CreateNetworkInterface", None),
            ("AttachNetworkInterface", "eni.attach"), ("RunCommand", "command.deliver"),
            ("UnassociateEipAddress", "eip.unassociate"), ("AssociateEipAddress", "eip.associate")]
RUNCOMMAND_BATCH = 100  # instances per RunCommand (Cloud Assistant's limit on InstanceId.N)


# -- the world ---------------------------------------------------------------------------------------

def scenario(n: int) -> dict[str, Any]:
    """n instances with a fixed public IP, and neighbours: a quarter as many private instances
    (SNAT egress already) and a twentieth in a vSwitch no SNAT entry covers (blocked)."""
    k = max(1, math.ceil(n / PER_VSWITCH))
    vswitches = [{"name": f"a{i}", "zone": "cn-hangzhou-h", "cidr": f"10.{i + 1}.0.0/20"} for i in range(k)]
    vswitches += [{"name": "nat", "zone": "cn-hangzhou-h", "cidr": "10.200.0.0/24"},
                  {"name": "dark", "zone": "cn-hangzhou-h", "cidr": "10.201.0.0/22"}]
    insts: list[dict[str, Any]] = []
    left = n
    for i in range(k):
        c = min(PER_VSWITCH, left)
        left -= c
        insts.append({"name": f"web{i}", "vswitch": f"a{i}", "security_groups": ["sg"], "count": c,
                      "public_ip": "auto"})
        insts.append({"name": f"app{i}", "vswitch": f"a{i}", "security_groups": ["sg"], "count": max(1, c // 4)})
    insts.append({"name": "dark", "vswitch": "dark", "security_groups": ["sg"], "count": max(1, n // 20),
                  "public_ip": "auto"})
    # 198.18.0.0/15 (RFC 2544, for benchmarks): the documentation ranges hold only 508 addresses
    return {"region": REGION, "public_ip_pools": ["198.18.0.0/15"],
            "vpcs": [{"name": "bench", "cidr": "10.0.0.0/8", "vswitches": vswitches,
                      "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
                      "nat_gateways": [{"name": "ngw", "vswitch": "nat",
                                        "snat": [{"vswitch": f"a{i}"} for i in range(k)]}],
                      "instances": insts}]}


class LabProc:
    """A lab in its own process: the real data plane (`vpclab serve --dataplane on`) or the SIMULATED
    guest (benchmarks/simlab.py).  Its CPU time (with its children: the guests' scripts) is read
    from /proc, so it is never counted as egressctl's."""

    def __init__(self, n: int, time_scale: float, real: bool, tmp: Path):
        f = tmp / f"scenario-{n}.yaml"
        f.write_text(yaml.safe_dump(scenario(n)))
        common = ["--scenario", str(f), "--latency", "realistic", "--time-scale", str(time_scale),
                  "--throttle", "default"]
        if real:
            cmd = [sys.executable, "-m", "vpclab", "serve", *common, "--dataplane", "on"]
        else:
            cmd = [sys.executable, str(HERE / "simlab.py"), *common, "--guest-latency", str(GUEST_SIM_S)]
        self.guest = "real (data plane)" if real else "SIMULATED"
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=(tmp / f"lab-{n}.err").open("w"),
                                     text=True, env=clean_env())
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"the lab did not start: {(tmp / f'lab-{n}.err').read_text()[-2000:]}")
        self.ready = json.loads(line)
        self.start_s = time.perf_counter() - t0

    def cpu_s(self) -> tuple[float, float]:
        """(the lab's own CPU seconds, its children's: guest scripts, nft, ip)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick

    def stop(self) -> None:
        stop(self.proc)


def egressctl_env(lab: LabProc) -> dict[str, str]:
    env = clean_env()
    env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
                "EGRESSCTL_ENDPOINT": lab.ready["endpoint"], "EGRESSCTL_REGION": REGION})
    return env


def rates_file(time_scale: float, tmp: Path) -> Path:
    """egressctl's default quotas, with the window in the lab's time."""
    f = tmp / "rates.yaml"
    f.write_text("".join(f"'{k}': {q.calls}/{q.window_s * time_scale:g}\n" for k, q in DEFAULT_QUOTAS.items()))
    return f


def run_cli(args: list[str], env: dict[str, str], tmp: Path) -> tuple[int, str, float, float]:
    """Run egressctl; returns (exit code, stdout, CPU seconds, peak RSS MiB) of that process alone."""
    err = tmp / "egressctl.err"
    proc = subprocess.Popen([sys.executable, "-m", "egressctl", *args], stdout=subprocess.PIPE,
                            stderr=err.open("w"), text=True, env=env)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"egressctl {args[0]} exited {proc.returncode}: {err.read_text()[-2000:]}")
    return proc.returncode, out, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def make_plan(lab: LabProc, tmp: Path) -> tuple[Path, list[str]]:
    plan = tmp / f"plan-{lab.proc.pid}.json"
    run_cli(["plan", "--all", "-o", str(plan), "--output", "json"], egressctl_env(lab), tmp)
    ids = [i["instance_id"] for i in json.loads(plan.read_text())["instances"]]
    return plan, ids


def cutover_gaps(events: list[dict[str, Any]]) -> list[float]:
    """Per instance: from the start of `unassociate` (the EIP leaves the instance) to the end of
    `associate` (the EIP is InUse on the ENI), from apply's own JSON events."""
    down: dict[str, float] = {}
    gaps = []
    for e in events:
        if e.get("event") == "step_started" and e.get("step") == "unassociate":
            down.setdefault(e["instance_id"], e["ts"])
        elif e.get("event") == "step_done" and e.get("step") == "associate" and e["instance_id"] in down:
            gaps.append(e["ts"] - down[e["instance_id"]])
    return sorted(gaps)


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


# -- the runs ----------------------------------------------------------------------------------------

def run_egressctl(n: int, a: argparse.Namespace, tmp: Path, *extra: str, label: str) -> dict[str, Any]:
    lab = LabProc(n, a.time_scale, a.real, tmp)
    try:
        plan, ids = make_plan(lab, tmp)
        assert len(ids) == n, f"the plan has {len(ids)} instances, expected {n}"
        lab_cpu0, t0 = lab.cpu_s(), time.perf_counter()
        code, out, cpu, rss = run_cli(["--rates", str(rates_file(a.time_scale, tmp)), "apply", str(plan), "--yes",
                                       "--output", "json", "--poll-interval", f"{a.time_scale:g}", *extra],
                                      egressctl_env(lab), tmp)
        wall = time.perf_counter() - t0
        lab_cpu1 = lab.cpu_s()
        lab_cpu, lab_children = lab_cpu1[0] - lab_cpu0[0], lab_cpu1[1] - lab_cpu0[1]
        (tmp / f"events-{label.split()[0]}-{n}.jsonl").write_text(out)  # apply's own JSON lines, to look into
        events = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        summary = next(e for e in reversed(events) if e.get("event") == "summary")
        api = summary["api"]
        calls = Counter(api["calls"])
        gaps = cutover_gaps(events)
        return {"label": label, "n": n, "guest": lab.guest, "exit_code": code, "done": len(summary["done"]),
                "failed": len(summary["failed"]), "wall_s": round(wall, 2), "engine_wall_s": summary["wall_s"],
                "api_calls": sum(calls.values()), "calls_by_action": dict(sorted(calls.items())),
                "throttled": sum(api["throttled"].values()), "retries": sum(api["retries"].values()),
                "cpu_s": round(cpu, 2), "peak_rss_mib": round(rss, 1),
                "lab_cpu_s": round(lab_cpu + lab_children, 2), "lab_children_cpu_s": round(lab_children, 2),
                "lab_start_s": round(lab.start_s, 2),
                "cutover_median_s": round(median(gaps), 3), "cutover_p99_s": round(pct(gaps, 0.99), 3)}
    finally:
        lab.stop()


def run_template(n: int, a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    lab = LabProc(n, a.time_scale, a.real, tmp)
    try:
        _, ids = make_plan(lab, tmp)  # the same instances egressctl would migrate (the plan is not used)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / "template_apply.py"), "--endpoint", lab.ready["endpoint"],
                               "--region", REGION, "--ids", ",".join(ids), "--access-key-id", DEFAULT_ACCESS_KEY_ID,
                               "--access-key-secret", DEFAULT_ACCESS_KEY_SECRET, "--concurrency", "10",
                               "--poll", f"{3 * a.time_scale:g}"], capture_output=True, text=True, env=clean_env())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"template_apply failed: {proc.stderr[-2000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        gaps = res["cutover_s"]
        return {"label": "template", "n": n, "guest": lab.guest, "done": n - len(res["failed"]),
                "failed": len(res["failed"]), "wall_s": round(wall, 2), "api_calls": sum(res["calls"].values()),
                "calls_by_action": res["calls"], "throttled": res["throttled"],
                "cutover_median_s": round(median(gaps), 3), "cutover_p99_s": round(pct(gaps, 0.99), 3)}
    finally:
        lab.stop()


# -- the bound ---------------------------------------------------------------------------------------

def slowest_path(n: int, time_scale: float, guest_s: float, trials: int = 400) -> float:
    """The expected critical path of the slowest of n instances: the lab draws every transition as
    base ± uniform jitter, and a fleet cannot end before its slowest instance's own transitions did.
    (Monte Carlo, fixed seed; a sharper figure than the mean path when n is small.)"""
    rng = random.Random(7)
    ops = [PROFILE[op] for _, op in CRITICAL if op]
    return round(sum(max(sum(rng.uniform(o["base"] - o.get("jitter", 0), o["base"] + o.get("jitter", 0))
                             for o in ops) for _ in range(n)) for _ in range(trials)) / trials * time_scale
                 + guest_s, 3)


def lower_bound(n: int, time_scale: float, guest_s: float) -> dict[str, Any]:
    """From the profiles alone.  Critical path: the transitions one instance must wait for, one after
    another (their mean durations), plus the guest's own time.  Rates: the lab's throttle is a
    bucket holding one window's quota that refills at quota/window, so an action needing C calls
    takes at least (C - quota) / rate after its first call."""
    throttle = Throttle(time_scale=time_scale)
    cp = sum(PROFILE[op]["base"] * time_scale for _, op in CRITICAL if op) + guest_s
    terms = {}
    for action, _ in CRITICAL:
        calls = math.ceil(n / RUNCOMMAND_BATCH) if action == "RunCommand" else n
        limit, rate = throttle.limit_for(action), throttle.rate(action)
        terms[action] = {"calls": calls, "quota": f"{limit}/{throttle.window:g}s",
                         "rate_s": round(max(0, calls - limit) / rate, 3), "naive_s": round(calls / rate, 3)}
    worst = max(terms, key=lambda k: terms[k]["rate_s"])
    bound = max(cp, terms[worst]["rate_s"])
    naive = max(cp, max(t["naive_s"] for t in terms.values()))
    # no schedule can start an action before one instance reached it, or end before it finished
    i = [a for a, _ in CRITICAL].index(worst)
    before = sum(PROFILE[op]["base"] * time_scale for _, op in CRITICAL[:i] if op) + (
        guest_s if i > [a for a, _ in CRITICAL].index("RunCommand") else 0)
    after = sum(PROFILE[op]["base"] * time_scale for _, op in CRITICAL[i:] if op)
    return {"critical_path_s": round(cp, 3), "slowest_path_s": slowest_path(n, time_scale, guest_s),
            "binding_action": worst if terms[worst]["rate_s"] > cp else
            "critical path", "bound_s": round(bound, 3), "bound_naive_s": round(naive, 3),
            "bound_pipeline_s": round(max(cp, before + terms[worst]["rate_s"] + after), 3), "terms": terms}


# -- main --------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--time-scale", type=float, default=0.25)
    ap.add_argument("--real-max", type=int, default=200, help="largest N run on the real data plane")
    ap.add_argument("--no-real", dest="real", action="store_false", help="always simulate the guest")
    ap.add_argument("--serial-sample", type=int, default=10, help="instances for --parallel 1 (then x N/sample)")
    ap.add_argument("--template-max", type=int, default=200, help="largest N the template runs in full")
    ap.add_argument("--audit-sizes", default="1000,10000", help="'' to skip")
    ap.add_argument("--no-baselines", dest="baselines", action="store_false")
    a = ap.parse_args()
    if a.real and os.geteuid() != 0:
        print("fleet_apply: not root: the guest is SIMULATED for every N", file=sys.stderr)
        a.real = False
    a.real = a.real and a.n <= a.real_max  # every run of this invocation (baselines too) uses the same guest
    tmp = Path(tempfile.mkdtemp(prefix="egc-fleet-"))
    print(f"fleet_apply: scenarios, plans and apply's events in {tmp}", file=sys.stderr)
    runs = [run_egressctl(a.n, a, tmp, label="egressctl")]
    main_run = runs[0]
    guest_s = GUEST_SIM_S * a.time_scale if main_run["guest"] == "SIMULATED" else 0.0
    bound = lower_bound(a.n, a.time_scale, guest_s)
    if a.baselines:
        k = min(a.serial_sample, a.n)
        serial = run_egressctl(k, a, tmp, "--parallel", "1", label="serial (--parallel 1)")
        serial["extrapolated_from"] = k
        serial["wall_s_for_n"] = round(serial["wall_s"] * a.n / k, 1)
        runs.append(serial)
        m = min(a.template_max, a.n)
        tpl = run_template(m, a, tmp)
        tpl["extrapolated_from"] = m
        tpl["wall_s_for_n"] = round(tpl["wall_s"] * a.n / m, 1)
        runs.append(tpl)
    audits = []
    if a.audit_sizes:
        from egressctl_calls import bench_audit

        audits = [bench_audit(int(x)) for x in a.audit_sizes.split(",") if x]

    print(f"fleet apply: N={a.n}, realistic profile x {a.time_scale}, quotas = the lab's default (published), "
          f"guest {main_run['guest']}")
    print(f"{'':26}{'N run':>6}{'wall s':>9}{'for N s':>9}{'÷bound':>8}{'calls/inst':>11}{'throttled':>10}"
          f"{'cut-over med/p99 s':>20}")
    for r in runs:
        for_n = r.get("wall_s_for_n", r["wall_s"])
        print(f"{r['label']:26}{r['n']:>6}{r['wall_s']:>9.2f}{for_n:>9.1f}{for_n / bound['bound_s']:>8.2f}"
              f"{r['api_calls'] / max(1, r['n']):>11.2f}{r['throttled']:>10}"
              f"{r['cutover_median_s']:>10.3f}/{r['cutover_p99_s']:.3f}")
    t = bound["terms"]
    print(f"bound {bound['bound_s']} s = max(critical path {bound['critical_path_s']} s, "
          + ", ".join(f"{k} ({v['calls']}-quota)/rate = {v['rate_s']} s" for k, v in t.items() if v["rate_s"] > 0)
          + f"); binding: {bound['binding_action']}; without the first window's burst {bound['bound_naive_s']} s; "
          f"with pipeline fill and drain {bound['bound_pipeline_s']} s; the slowest of N instances' own path "
          f"(expected, from the profile's jitter) {bound['slowest_path_s']} s")
    print(f"egressctl: {main_run['cpu_s'] / a.n * 1000:.1f} ms CPU per instance, peak RSS "
          f"{main_run['peak_rss_mib']} MiB, {main_run['throttled']} throttled calls absorbed "
          f"({main_run['retries']} retries), {main_run['failed']} failed; lab CPU {main_run['lab_cpu_s']} s "
          f"({main_run['lab_cpu_s'] / main_run['wall_s'] * 100:.0f}% of one core)")
    print("calls per instance: " + ", ".join(f"{k} {v / a.n:.3f}" for k, v in main_run["calls_by_action"].items()))
    for r in audits:
        print(f"audit of {r['n']:>6} instances: {r['calls']:>4} calls, {r['wall_s_median']} s (median of 3)")
    print(json.dumps({
        "benchmark": "fleet_apply", "machine": machine(), "n": a.n, "time_scale": a.time_scale,
        "guest": main_run["guest"], "wall_s": main_run["wall_s"], "bound_s": bound["bound_s"],
        "ratio": round(main_run["wall_s"] / bound["bound_s"], 3),
        "ratio_pipeline": round(main_run["wall_s"] / bound["bound_pipeline_s"], 3),
        "ratio_slowest_path": round(main_run["wall_s"] / max(bound["bound_s"], bound["slowest_path_s"]), 3),
        "api_calls_per_instance": round(main_run["api_calls"] / a.n, 3),
        "calls_per_instance_by_action": {k: round(v / a.n, 3) for k, v in main_run["calls_by_action"].items()},
        "throttled": main_run["throttled"], "failed": main_run["failed"],
        "cpu_s_per_instance": round(main_run["cpu_s"] / a.n, 4), "peak_rss_mib": main_run["peak_rss_mib"],
        "lab_cpu_share": round(main_run["lab_cpu_s"] / main_run["wall_s"], 3), "bound": bound, "runs": runs,
        "audit": audits}))


if __name__ == "__main__":
    main()
