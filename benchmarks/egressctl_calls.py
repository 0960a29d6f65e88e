"""egressctl's cost: API calls per migrated instance (by action), CPU seconds per instance, and
audit calls and wall time for 1k and 10k instances.

The lab runs in its own process (benchmarks/simlab.py, guest SIMULATED), so the CPU measured here is
egressctl's alone.

    .venv/bin/python benchmarks/egressctl_calls.py [--migrate 100] [--audit-sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import clean_env, machine, stop  # noqa: E402

REGION = "cn-hangzhou"


def scenario(n_fixed: int, n_private: int) -> dict:
    return {
        "region": REGION, "public_ip_pools": ["198.18.0.0/15"],
        "vpcs": [{
            "name": "vpc", "cidr": "10.0.0.0/8",
            "vswitches": [{"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.1.0.0/16"},
                          {"name": "n", "zone": "cn-hangzhou-h", "cidr": "10.3.0.0/24"}],
            "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
            "nat_gateways": [{"name": "ngw", "vswitch": "n", "snat": [{"vswitch": "a"}]}],
            "instances": [x for x in (
                {"name": "fixed", "vswitch": "a", "security_groups": ["sg"], "count": n_fixed, "public_ip": "auto"}
                if n_fixed else None,
                {"name": "private", "vswitch": "a", "security_groups": ["sg"], "count": n_private}
                if n_private else None) if x],
        }],
    }


def start(sc: dict, *extra: str) -> tuple[subprocess.Popen, dict]:
    tmp = Path(tempfile.mkdtemp(prefix="egc-bench-"))
    (tmp / "s.yaml").write_text(yaml.safe_dump(sc))
    proc = subprocess.Popen([sys.executable, str(HERE / "simlab.py"), "--scenario", str(tmp / "s.yaml"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        raise RuntimeError(proc.stderr.read())  # type: ignore[union-attr]
    return proc, json.loads(line)


def cloud_for(ready: dict, time_scale: float = 1.0):
    """egressctl's Cloud against the lab, its default quotas with the window in the lab's time."""
    from alibabacloud_credentials import models as cm
    from alibabacloud_credentials.client import Client as C

    from egressctl.cloud import Cloud, CloudSettings
    from egressctl.cloud.ratelimit import DEFAULT_QUOTAS, Quota
    from vpclab import DEFAULT_ACCESS_KEY_SECRET

    cred = C(cm.Config(type="access_key", access_key_id=ready["access_key_id"],
                       access_key_secret=DEFAULT_ACCESS_KEY_SECRET))
    ep = ready["endpoint"]
    quotas = {k: Quota(q.calls, q.window_s * time_scale) for k, q in DEFAULT_QUOTAS.items()}
    return Cloud(CloudSettings(region=REGION, ecs_endpoint=ep, vpc_endpoint=ep, sts_endpoint=ep, quotas=quotas),
                 credential=cred)


def bench_apply(n: int) -> dict:
    from egressctl import plan as plan_mod
    from egressctl import workflows
    from egressctl.preflight import Options

    proc, ready = start(scenario(n, n // 4), "--latency", "realistic", "--time-scale", "0.02", "--guest-latency",
                        "3", "--throttle", "default")
    try:
        cloud = cloud_for(ready, 0.02)
        p, _ = workflows.make_plan(cloud, REGION, instance_ids=None, select_all=True, vpc_id=None, tags=None,
                                   opts=Options())
        path = Path(tempfile.mkdtemp()) / "plan.json"
        plan_mod.save(p, path)
        before = Counter(cloud.stats.calls)
        cpu0, t0 = time.process_time(), time.perf_counter()
        summary = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.02), "apply")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        calls = Counter(cloud.stats.calls) - before
        assert summary.ok, summary
        migrated = len(summary.done)
        return {"n": migrated, "wall_s": round(wall, 2), "cpu_s_per_instance": round(cpu / migrated, 4),
                "calls_per_instance": {k: round(v / migrated, 3) for k, v in sorted(calls.items())},
                "total_calls_per_instance": round(sum(calls.values()) / migrated, 2),
                "mutating_calls_per_instance": round(sum(v for k, v in calls.items()
                                                         if not k.startswith(("Describe", "List")))
                                                     / migrated, 2),
                "throttled": dict(cloud.stats.throttled), "guest": ready.get("guest")}
    finally:
        stop(proc)


def bench_audit(n: int) -> dict:
    from egressctl import workflows

    proc, ready = start(scenario(n // 2, n - n // 2))
    try:
        cloud = cloud_for(ready)
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            res, _, _ = workflows.audit(cloud, REGION)
            walls.append(time.perf_counter() - t0)
        assert len(res.rows) == n
        walls.sort()
        return {"n": n, "calls": sum(res.calls.values()), "calls_by_action": res.calls,
                "wall_s_median": round(walls[1], 2)}
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--migrate", type=int, default=100)
    ap.add_argument("--audit-sizes", default="1000,10000")
    a = ap.parse_args()
    apply_res = bench_apply(a.migrate)
    audits = [bench_audit(int(n)) for n in a.audit_sizes.split(",") if n]
    print(f"apply of {apply_res['n']} instances (guest {apply_res['guest']}): {apply_res['wall_s']} s, "
          f"{apply_res['cpu_s_per_instance'] * 1000:.1f} ms CPU/instance, "
          f"{apply_res['total_calls_per_instance']} calls/instance ({apply_res['mutating_calls_per_instance']} "
          "mutating)")
    for k, v in apply_res["calls_per_instance"].items():
        print(f"  {k:32} {v:>7}")
    for r in audits:
        print(f"audit of {r['n']:>6} instances: {r['calls']:>4} calls, {r['wall_s_median']} s (median of 3)")
    print(json.dumps({"benchmark": "egressctl_calls", "machine": machine(), "apply": apply_res, "audit": audits}))


if __name__ == "__main__":
    main()
