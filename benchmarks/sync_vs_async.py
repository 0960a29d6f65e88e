"""How should egressctl drive the SDK concurrently?  Sync clients in a thread pool against the SDK's
``*_async`` methods under asyncio, same calls, same lab (its own process), one run, interleaved.

    .venv/bin/python benchmarks/sync_vs_async.py [--calls 600] [--concurrency 1,8,32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, start_lab, stop  # noqa: E402

REGION = "cn-hangzhou"


def client(ready: dict):
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi import models as om

    from vpclab import DEFAULT_ACCESS_KEY_SECRET

    return Client(om.Config(access_key_id=ready["access_key_id"], access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
                            endpoint=ready["endpoint"].removeprefix("http://"), protocol="HTTP",
                            read_timeout=30000, connect_timeout=10000))


def run_sync(c, calls: int, conc: int) -> tuple[float, float]:
    from alibabacloud_ecs20140526 import models as em

    req = em.DescribeInstancesRequest(region_id=REGION, max_results=10)
    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(lambda _: c.describe_instances(req), range(calls)))
    return calls / (time.perf_counter() - t0), (time.process_time() - cpu0) / calls * 1000


def run_async(c, calls: int, conc: int) -> tuple[float, float]:
    from alibabacloud_ecs20140526 import models as em

    req = em.DescribeInstancesRequest(region_id=REGION, max_results=10)

    async def go() -> None:
        sem = asyncio.Semaphore(conc)

        async def one() -> None:
            async with sem:
                await c.describe_instances_async(req)

        await asyncio.gather(*(one() for _ in range(calls)))

    cpu0, t0 = time.process_time(), time.perf_counter()
    asyncio.run(go())
    return calls / (time.perf_counter() - t0), (time.process_time() - cpu0) / calls * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=600)
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import tempfile

    import yaml

    sc = Path(tempfile.mkdtemp()) / "s.yaml"
    sc.write_text(yaml.safe_dump({"region": REGION, "vpcs": [{"name": "v", "cidr": "10.0.0.0/16", "vswitches": [
        {"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.0.1.0/24"}], "security_groups": [{"name": "sg"}],
        "instances": [{"name": "x", "vswitch": "a", "security_groups": ["sg"], "count": 20}]}]}))
    proc, ready, _ = start_lab("--scenario", str(sc), "--throttle", "off", "--dataplane", "off")
    rows = []
    try:
        c = client(ready)
        for conc in (int(x) for x in a.concurrency.split(",")):
            res: dict[str, list[tuple[float, float]]] = {"sync": [], "async": []}
            for _ in range(a.repeats):
                res["sync"].append(run_sync(c, a.calls, conc))
                res["async"].append(run_async(c, a.calls, conc))
            row = {"concurrency": conc}
            for k, v in res.items():
                row[f"{k}_calls_per_s"] = round(statistics.median(x[0] for x in v), 1)
                row[f"{k}_client_cpu_ms_per_call"] = round(statistics.median(x[1] for x in v), 3)
            rows.append(row)
    finally:
        stop(proc)
    print(f"{'concurrency':>11} {'sync calls/s':>13} {'cpu ms/call':>12} {'async calls/s':>14} {'cpu ms/call':>12}")
    for r in rows:
        print(f"{r['concurrency']:>11} {r['sync_calls_per_s']:>13} {r['sync_client_cpu_ms_per_call']:>12} "
              f"{r['async_calls_per_s']:>14} {r['async_client_cpu_ms_per_call']:>12}")
    print(json.dumps({"benchmark": "sync_vs_async", "machine": machine(), "rows": rows}))


if __name__ == "__main__":
    main()
