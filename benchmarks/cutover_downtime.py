"""Inbound downtime during the cut-over, measured by real packets, and the data plane's build time.

A prober on the lab's internet starts a TCP connection to every EIP every 10 ms during apply; an
instance's outage is its longest run of failed attempts (from the first failed attempt to the next
successful one).  egressctl's order (guest routing before the EIP moves) against the seed's order
(guest routing after the move), same latency profile, same scenario.  Root only.

    .venv/bin/python benchmarks/cutover_downtime.py [--instances 6] [--time-scale 0.25] [--repeats 3]
        [--build-sizes 10,100,500]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine  # noqa: E402

REGION = "cn-hangzhou"


def scenario(n_fixed: int, n_private: int = 0) -> dict:
    insts = [{"name": "web", "vswitch": "a", "security_groups": ["sg"], "count": n_fixed, "public_ip": "auto"}]
    if n_private:
        insts.append({"name": "app", "vswitch": "a", "security_groups": ["sg"], "count": n_private})
    return {"region": REGION, "public_ip_pools": ["203.0.113.0/24", "198.51.100.0/24", "198.18.0.0/15"],
            "vpcs": [{"name": "v", "cidr": "10.0.0.0/8",
                      "vswitches": [{"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.1.0.0/16"},
                                    {"name": "n", "zone": "cn-hangzhou-h", "cidr": "10.3.0.0/24"}],
                      "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
                      "nat_gateways": [{"name": "ngw", "vswitch": "n", "snat": [{"vswitch": "a"}]}],
                      "instances": insts}]}


def outages(samples: list[list]) -> tuple[float, float]:
    """(longest outage in ms, total failed time in ms) from [[t, ok], ...]."""
    samples = sorted(samples)
    longest = total = 0.0
    start = None
    for t, ok in samples:
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            longest = max(longest, t - start)
            total += t - start
            start = None
    if start is not None and samples:
        longest = max(longest, samples[-1][0] - start)
    return longest * 1000, total * 1000


def run_once(order: str, n: int, time_scale: float) -> dict:
    from tests.egressctl.conftest import cloud_for

    from egressctl import plan as plan_mod
    from egressctl import workflows
    from egressctl.preflight import Options
    from vpclab import Lab

    with Lab(scenario(n), dataplane="on", latency="realistic", time_scale=time_scale, seed=7) as lab:
        cloud = cloud_for(lab)
        p, _ = workflows.make_plan(cloud, REGION, instance_ids=None, select_all=True, vpc_id=None, tags=None,
                                   opts=Options(order=order))
        path = Path(tempfile.mkdtemp()) / "plan.json"
        plan_mod.save(p, path)
        targets = ",".join(f"{i.public_ip}:22" for i in p.instances)
        prober = subprocess.Popen(["ip", "netns", "exec", lab.dataplane.hosts()["echo"], sys.executable,
                                   str(HERE / "prober.py"), targets, "0.01"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        t0 = time.perf_counter()
        summary = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.1), "apply")
        wall = time.perf_counter() - t0
        lab.dataplane.wait_idle()
        time.sleep(0.5)
        prober.send_signal(signal.SIGTERM)
        data = json.loads(prober.communicate(timeout=30)[0])
        assert summary.ok, summary
        per = {k: outages(v) for k, v in data.items()}
        still_down = [k for k, v in data.items() if v and not sorted(v)[-1][1]]
        return {"order": order, "apply_wall_s": round(wall, 2),
                "max_outage_ms": {k: round(v[0]) for k, v in per.items()},
                "probes": {k: len(v) for k, v in data.items()}, "still_down_at_end": still_down}


def build_time(n: int) -> dict:
    from vpclab import Lab

    t0 = time.perf_counter()
    lab = Lab(scenario(n // 2, n - n // 2), dataplane="on")
    t1 = time.perf_counter()
    lab.start()
    t2 = time.perf_counter()
    ns = len(lab.dataplane.topo.namespaces())
    lab.stop()
    t3 = time.perf_counter()
    return {"n": n, "scenario_s": round(t1 - t0, 2), "dataplane_build_s": round(t2 - t1, 2),
            "teardown_s": round(t3 - t2, 2), "namespaces": ns}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=6)
    ap.add_argument("--time-scale", type=float, default=0.25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--build-sizes", default="10,100,500")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    runs = []
    for _ in range(a.repeats):
        for order in ("guest-first", "seed"):
            runs.append(run_once(order, a.instances, a.time_scale))
    summary = {}
    for order in ("guest-first", "seed"):
        worst = [max(r["max_outage_ms"].values()) for r in runs if r["order"] == order]
        per_instance = [v for r in runs if r["order"] == order for v in r["max_outage_ms"].values()]
        summary[order] = {"median_max_outage_ms": round(statistics.median(per_instance)),
                          "worst_outage_ms": max(worst), "runs": len(worst)}
    builds = [build_time(int(n)) for n in a.build_sizes.split(",") if n]
    print(f"inbound outage per instance during apply ({a.instances} instances, realistic profile x "
          f"{a.time_scale}, probes every 10 ms, {a.repeats} runs):")
    for order, s in summary.items():
        print(f"  {order:12} median {s['median_max_outage_ms']:>6} ms   worst {s['worst_outage_ms']:>6} ms")
    print(f"  ratio seed/guest-first (medians): "
          f"{summary['seed']['median_max_outage_ms'] / max(summary['guest-first']['median_max_outage_ms'], 1):.1f}x")
    for b in builds:
        print(f"data plane for {b['n']:>4} instances: build {b['dataplane_build_s']} s, teardown "
              f"{b['teardown_s']} s ({b['namespaces']} namespaces)")
    print(json.dumps({"benchmark": "cutover_downtime", "machine": machine(), "instances": a.instances,
                      "time_scale": a.time_scale, "summary": summary, "runs": runs, "build": builds}))


if __name__ == "__main__":
    main()
