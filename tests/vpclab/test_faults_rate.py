"""A fault rule with ``rate: 0`` never fires, whatever its kind (docs/reliability.md): every call
succeeds at once, a new resource is listed at once, a transition is not extended, and GetFaults counts
nothing.  (The effects of each kind at rate 1 are in test_faults.py.)"""

from __future__ import annotations

import time

from alibabacloud_ecs20140526 import models as em
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_vpc20160428 import models as vm
from alibabacloud_vpc20160428.client import Client as VpcClient

from vpclab import Lab
from vpclab.faults import KINDS, parse_rules
from vpclab.resources.enis import Eni

from .conftest import REGION, SEED, sdk_config

# each kind at its most disruptive, but never rolled
NEVER = {"seed": 1, "rules": [
    {"kind": "error", "rate": 0}, {"kind": "error", "rate": 0, "code": "InternalError"},
    {"kind": "throttle", "rate": 0, "burst_s": 60}, {"kind": "latency", "rate": 0, "min_ms": 2000, "max_ms": 3000},
    {"kind": "lost_response", "rate": 0}, {"kind": "sticky", "rate": 0, "extra_s": 60},
    {"kind": "stale_describe", "actions": "Describe*", "rate": 0, "lag_s": 60},
    {"kind": "storm", "rate": 0, "start_s": 0, "duration_s": 60},
]}


def test_rate_zero_never_fires_for_any_kind() -> None:
    rules, seed = parse_rules(NEVER)
    assert {r.kind for r in rules} == set(KINDS)
    with Lab(SEED) as lab:
        lab.faults.set(rules, seed)
        ecs, vpc = EcsClient(sdk_config(lab)), VpcClient(sdk_config(lab))
        web1 = lab.ids["instances"]["web-1"]
        t = time.monotonic()
        for _ in range(20):
            assert ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION)).status_code == 200
        eni = ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=lab.ids["vswitches"]["vsw-app"],
            security_group_id=lab.ids["security_groups"]["sg-web"])).body.network_interface_id
        listed = ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
            region_id=REGION, network_interface_id=[eni])).body.network_interface_sets.network_interface_set
        assert [n.network_interface_id for n in listed] == [eni], "a new ENI was hidden (stale_describe)"
        ecs.attach_network_interface(em.AttachNetworkInterfaceRequest(region_id=REGION, instance_id=web1,
                                                                      network_interface_id=eni))
        eip = vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION)).body.allocation_id
        seen = vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(region_id=REGION, allocation_id=eip))
        assert [e.allocation_id for e in seen.body.eip_addresses.eip_address] == [eip]
        assert time.monotonic() - t < 1.5, "an answer was delayed (latency)"
        with lab.world.lock:
            lab.world.advance()
            assert lab.world.get(Eni, eni).status == "InUse", "the attach was held in Attaching (sticky)"
        assert lab.faults.counts() == {}
