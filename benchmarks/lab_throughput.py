"""vpclab throughput: SDK calls/s against the lab vs. against a trivial server, in one run.

For 1k and 10k instances: DescribeInstances in pages of 100 (walking NextToken) and a mutating call
(CreateNetworkInterface with a ClientToken), with the official sync SDK client, sequentially.  The
trivial server answers the same bytes the lab answered, doing no work, so ``lab ÷ trivial`` is the
share of the client's reachable rate the lab leaves it.  Also: start time (until the ready line)
and resident memory at N instances, in memory and with --state-dir (fsync'd sqlite).

    .venv/bin/python benchmarks/lab_throughput.py [--sizes 1000,10000] [--calls 400] [--repeats 3]

Prints a table, then one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clean_env, machine, median, rss_mib, start_lab, stop

REGION = "cn-hangzhou"


def scenario(n: int) -> dict[str, Any]:
    half = n // 2
    return {
        "region": REGION,
        "public_ip_pools": ["198.18.0.0/15"],  # RFC 2544 benchmarking range: enough addresses for 10k
        "vpcs": [{
            "name": "vpc-bench", "cidr": "10.0.0.0/8",
            "vswitches": [{"name": "vsw-a", "zone": "cn-hangzhou-h", "cidr": "10.1.0.0/16"},
                          {"name": "vsw-eni", "zone": "cn-hangzhou-h", "cidr": "10.2.0.0/16"},
                          {"name": "vsw-nat", "zone": "cn-hangzhou-h", "cidr": "10.3.0.0/24"}],
            "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
            "nat_gateways": [{"name": "ngw", "vswitch": "vsw-nat", "snat": [{"vswitch": "vsw-a"}]}],
            "instances": [
                {"name": "fixed", "vswitch": "vsw-a", "security_groups": ["sg"], "count": half, "public_ip": "auto"},
                {"name": "snat", "vswitch": "vsw-a", "security_groups": ["sg"], "count": n - half},
            ],
        }],
    }


def clients(endpoint_hostport: str, akid: str, secret: str):
    from alibabacloud_ecs20140526.client import Client as EcsClient
    from alibabacloud_tea_openapi import models as om

    return EcsClient(om.Config(access_key_id=akid, access_key_secret=secret, endpoint=endpoint_hostport,
                               protocol="HTTP", read_timeout=60000))


def raw_call(client, action: str, query: dict[str, str]) -> dict[str, Any]:
    from alibabacloud_tea_openapi import utils_models as um
    from darabonba.runtime import RuntimeOptions

    params = um.Params(action=action, version="2014-05-26", protocol="HTTP", pathname="/", method="POST",
                       auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    return client.call_api(params, um.OpenApiRequest(query=query), RuntimeOptions())["body"]


class Workload:
    def __init__(self, vsw_eni: str, sg: str):
        self.vsw_eni, self.sg = vsw_eni, sg
        self.token = ""
        self.n = 0

    def describe(self, ecs) -> None:
        from alibabacloud_ecs20140526 import models as em

        r = ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, max_results=100,
                                                               next_token=self.token or None))
        assert len(r.body.instances.instance) >= 1
        self.token = r.body.next_token or ""

    def mutate(self, ecs) -> None:
        from alibabacloud_ecs20140526 import models as em

        self.n += 1
        r = ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=self.vsw_eni, security_group_id=self.sg,
            client_token=f"bench-{time.time_ns()}"))
        assert r.body.network_interface_id


def rate(fn, client, calls: int) -> float:
    for _ in range(10):
        fn(client)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(client)
    return calls / (time.perf_counter() - t0)


def trivial(body: dict[str, Any]) -> tuple[subprocess.Popen, str]:
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("trivial_server.py")), f.name],
                            stdout=subprocess.PIPE, text=True, env=clean_env())
    port = proc.stdout.readline().strip()  # type: ignore[union-attr]
    return proc, f"127.0.0.1:{port}"


def bench_size(n: int, calls: int, repeats: int, durable: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vpclab-bench-"))
    sc = tmp / "scenario.yaml"
    sc.write_text(yaml.safe_dump(scenario(n)))
    args = ["--scenario", str(sc), "--throttle", "off", "--dataplane", "off"]
    if durable:
        args += ["--state-dir", str(tmp / "state")]
    proc, ready, start_s = start_lab(*args)
    try:
        rss_start = rss_mib(proc.pid)
        from vpclab import DEFAULT_ACCESS_KEY_SECRET

        ecs = clients(ready["endpoint"].removeprefix("http://"), ready["access_key_id"], DEFAULT_ACCESS_KEY_SECRET)
        from alibabacloud_ecs20140526 import models as em

        inst = ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, max_results=1)
                                      ).body.instances.instance[0]
        from alibabacloud_tea_openapi import models as om
        from alibabacloud_vpc20160428 import models as vm
        from alibabacloud_vpc20160428.client import Client as VpcClient

        vpc = VpcClient(om.Config(access_key_id=ready["access_key_id"], access_key_secret=DEFAULT_ACCESS_KEY_SECRET,
                                  endpoint=ready["endpoint"].removeprefix("http://"), protocol="HTTP"))
        vsw_eni = next(v.v_switch_id for v in vpc.describe_vswitches(vm.DescribeVSwitchesRequest(
            region_id=REGION, v_switch_name="vsw-eni")).body.v_switches.v_switch)
        w = Workload(vsw_eni, inst.security_group_ids.security_group_id[0])
        page_body = raw_call(ecs, "DescribeInstances", {"RegionId": REGION, "MaxResults": "100"})
        eni_body = raw_call(ecs, "CreateNetworkInterface", {"RegionId": REGION, "VSwitchId": vsw_eni,
                                                            "SecurityGroupId": w.sg, "ClientToken": "bench-body"})
        results: dict[str, list[float]] = {"describe_lab": [], "describe_trivial": [], "mutate_lab": [],
                                           "mutate_trivial": []}
        tproc_d, tend_d = trivial(page_body)
        tproc_m, tend_m = trivial(eni_body)
        try:
            t_d = clients(tend_d, ready["access_key_id"], DEFAULT_ACCESS_KEY_SECRET)
            t_m = clients(tend_m, ready["access_key_id"], DEFAULT_ACCESS_KEY_SECRET)
            for _ in range(repeats):  # interleaved, so drift on a noisy machine hits both sides
                results["describe_lab"].append(rate(w.describe, ecs, calls))
                results["describe_trivial"].append(rate(w.describe, t_d, calls))
                results["mutate_lab"].append(rate(w.mutate, ecs, calls))
                results["mutate_trivial"].append(rate(w.mutate, t_m, calls))
        finally:
            stop(tproc_d)
            stop(tproc_m)
        rss_end = rss_mib(proc.pid)
    finally:
        stop(proc)
    out: dict[str, Any] = {"n": n, "durable": durable, "start_s": round(start_s, 2),
                           "rss_mib_start": round(rss_start, 1), "rss_mib_end": round(rss_end, 1),
                           "page_bytes": len(json.dumps(page_body))}
    for k, xs in results.items():
        out[k + "_per_s"] = round(median(xs), 1)
    out["describe_ratio"] = round(median(results["describe_lab"]) / median(results["describe_trivial"]), 3)
    out["mutate_ratio"] = round(median(results["mutate_lab"]) / median(results["mutate_trivial"]), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-durable", action="store_true", help="skip the --state-dir variant")
    a = ap.parse_args()
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        for durable in ((False,) if a.no_durable else (False, True)):
            rows.append(bench_size(n, a.calls, a.repeats, durable))
    hdr = (f"{'N':>6} {'state':>7} {'start s':>8} {'RSS MiB':>8} {'Describe/s lab':>15} {'trivial':>8} {'ratio':>6} "
           f"{'Create/s lab':>13} {'trivial':>8} {'ratio':>6}")
    print(hdr)
    for r in rows:
        print(f"{r['n']:>6} {'sqlite' if r['durable'] else 'memory':>7} {r['start_s']:>8} {r['rss_mib_end']:>8} "
              f"{r['describe_lab_per_s']:>15} {r['describe_trivial_per_s']:>8} {r['describe_ratio']:>6} "
              f"{r['mutate_lab_per_s']:>13} {r['mutate_trivial_per_s']:>8} {r['mutate_ratio']:>6}")
    print(json.dumps({"benchmark": "lab_throughput", "machine": machine(), "calls": a.calls, "repeats": a.repeats,
                      "rows": rows}))


if __name__ == "__main__":
    main()
