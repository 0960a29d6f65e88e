"""Baseline: the migration written the way bulk templates do it (OOS ``Loop.RateControl`` with
concurrency 10, Terraform ``-parallelism=10``): the plain SDK, ten instances at a time, each
resource polled on its own every few seconds, the seed's seven steps in the seed's order (guest
routing after the EIP moved).  Kept in benchmarks/ as a yardstick; not part of the product.

    python benchmarks/template_apply.py --endpoint URL --region R --ids i-1,i-2 [--concurrency 10]
        [--poll 3] [--time-scale 1]

Prints one JSON line: wall time, calls by action, throttled calls, per-instance cut-over gaps.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_vpc20160428 import models as vpc
from alibabacloud_vpc20160428.client import Client as VpcClient
from darabonba.runtime import RuntimeOptions

from egressctl.guest.script import GuestRouting, render  # the seed's routing, as a script


class Template:
    def __init__(self, endpoint: str, region: str, akid: str, secret: str, poll_s: float):
        host = endpoint.split("://", 1)[1]
        cfg = dict(access_key_id=akid, access_key_secret=secret, endpoint=host, protocol="HTTP", region_id=region)
        self.ecs = EcsClient(open_api_models.Config(**cfg))
        self.vpc = VpcClient(open_api_models.Config(**cfg))
        self.region, self.poll_s = region, poll_s
        self.rt = RuntimeOptions(read_timeout=30000, connect_timeout=5000)
        self.calls: Counter[str] = Counter()
        self.throttled = 0
        self.lock = threading.Lock()

    def call(self, client: Any, action: str, req: Any) -> Any:
        """One call; on throttling wait what the server says and try again (what OOS does for us)."""
        method = getattr(client, action + "_with_options")
        while True:
            with self.lock:
                self.calls[action] += 1
            try:
                return method(req, self.rt).body
            except Exception as e:  # Tea exceptions: code and retry hint
                code = str(getattr(e, "code", ""))
                if "Throttling" not in code:
                    raise
                with self.lock:
                    self.throttled += 1
                time.sleep(max(getattr(e, "retry_after", 0) or 0, 200) / 1000)

    def poll(self, what: str, probe: Any, timeout_s: float = 600) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = probe()
            if v:
                return v
            time.sleep(self.poll_s)
        raise TimeoutError(what)

    def instance(self, iid: str) -> Any:
        body = self.call(self.ecs, "describe_instances", ecs.DescribeInstancesRequest(
            region_id=self.region, instance_ids=json.dumps([iid])))
        return body.instances.instance[0]

    def eip(self, alloc: str) -> Any:
        body = self.call(self.vpc, "describe_eip_addresses", vpc.DescribeEipAddressesRequest(
            region_id=self.region, allocation_id=alloc))
        return body.eip_addresses.eip_address[0]

    def migrate(self, iid: str) -> dict[str, float]:
        inst = self.instance(iid)
        vsw = inst.vpc_attributes.v_switch_id
        # 1. convert the fixed public IP to an EIP
        self.call(self.ecs, "convert_nat_public_ip_to_eip", ecs.ConvertNatPublicIpToEipRequest(
            region_id=self.region, instance_id=iid))
        alloc = self.poll("converted", lambda: self.instance(iid).eip_address.allocation_id)
        # 2. create a secondary ENI, 3. attach it
        body = self.call(self.ecs, "create_network_interface", ecs.CreateNetworkInterfaceRequest(
            region_id=self.region, v_switch_id=vsw,
            security_group_ids=list(inst.security_group_ids.security_group_id)))
        eni, eni_ip, mac = body.network_interface_id, body.private_ip_address, body.mac_address
        self.call(self.ecs, "attach_network_interface", ecs.AttachNetworkInterfaceRequest(
            region_id=self.region, instance_id=iid, network_interface_id=eni))

        def attached() -> bool:
            b = self.call(self.ecs, "describe_network_interfaces", ecs.DescribeNetworkInterfacesRequest(
                region_id=self.region, network_interface_id=[eni]))
            return b.network_interface_sets.network_interface_set[0].status == "InUse"
        self.poll("attached", attached)
        # 4. unbind the EIP from the instance, 5. bind it to the ENI
        t_down = time.monotonic()
        self.call(self.vpc, "unassociate_eip_address", vpc.UnassociateEipAddressRequest(
            region_id=self.region, allocation_id=alloc, instance_id=iid, instance_type="EcsInstance"))
        self.poll("unassociated", lambda: self.eip(alloc).status == "Available")
        self.call(self.vpc, "associate_eip_address", vpc.AssociateEipAddressRequest(
            region_id=self.region, allocation_id=alloc, instance_id=eni, instance_type="NetworkInterface",
            private_ip_address=eni_ip, mode="NAT"))
        self.poll("associated", lambda: self.eip(alloc).status == "InUse")
        t_up = time.monotonic()
        # 6. policy routing in the guest (the seed does it last)
        b = self.call(self.vpc, "describe_vswitches", vpc.DescribeVSwitchesRequest(region_id=self.region,
                                                                                   v_switch_id=vsw))
        net = ipaddress.ip_network(b.v_switches.v_switch[0].cidr_block)
        script = render(GuestRouting(mac=mac.lower(), ip=eni_ip, prefix=net.prefixlen,
                                     gateway=str(net.broadcast_address - 2), eni_id=eni), "apply", encoding="gzip")
        run = self.call(self.ecs, "run_command", ecs.RunCommandRequest(
            region_id=self.region, type="RunShellScript", instance_id=[iid], content_encoding="Base64",
            command_content=base64.b64encode(script.encode()).decode(), timeout=180))

        def finished() -> bool:
            inv = self.call(self.ecs, "describe_invocations", ecs.DescribeInvocationsRequest(
                region_id=self.region, invoke_id=run.invoke_id))
            st = inv.invocations.invocation[0].invocation_status
            if st in ("Failed", "Timeout", "Cancelled", "Stopped"):
                raise RuntimeError(f"{iid}: guest step {st}")
            return st in ("Finished", "Success")
        self.poll("guest", finished)
        return {"cutover_s": t_up - t_down}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--region", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--access-key-id", required=True)
    ap.add_argument("--access-key-secret", required=True)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--poll", type=float, default=3.0, help="seconds between polls of one resource")
    a = ap.parse_args()
    t = Template(a.endpoint, a.region, a.access_key_id, a.access_key_secret, a.poll)
    ids = [i for i in a.ids.split(",") if i]
    t0 = time.perf_counter()
    failures: dict[str, str] = {}
    gaps: list[float] = []
    with ThreadPoolExecutor(a.concurrency) as pool:
        futs = {pool.submit(t.migrate, i): i for i in ids}
        for f, iid in futs.items():
            try:
                gaps.append(f.result()["cutover_s"])
            except Exception as e:  # report, do not hide
                failures[iid] = f"{type(e).__name__}: {e}"
    wall = time.perf_counter() - t0
    print(json.dumps({"n": len(ids), "wall_s": round(wall, 3), "calls": dict(t.calls), "throttled": t.throttled,
                      "failed": failures, "cutover_s": sorted(gaps)}))


if __name__ == "__main__":
    main()
