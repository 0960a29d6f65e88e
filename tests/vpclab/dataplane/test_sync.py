"""The guest never runs ahead of the API: a Cloud Assistant command sees every NIC the API already
showed InUse, even when the lab's kernel work lags (as it does with 1000 instances on 2 cores)."""

from __future__ import annotations

import base64
import time

from alibabacloud_ecs20140526 import models as em

from vpclab import Lab

from ..conftest import REGION, Clients
from ..world_builder import wait


def test_a_command_sees_the_nic_the_api_showed_attached_even_when_the_kernel_lags(dp_lab: Lab) -> None:
    plane = dp_lab.dataplane
    real_apply = plane.topo.apply

    def slow_apply(desired):  # type: ignore[no-untyped-def]
        time.sleep(1.5)  # the kernel work behind a busy lab
        return real_apply(desired)

    plane.topo.apply = slow_apply  # type: ignore[method-assign]
    c = Clients(dp_lab)
    inst = c.ecs.describe_instances(em.DescribeInstancesRequest(
        region_id=REGION, instance_name="web-1")).body.instances.instance[0]
    eni = c.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=inst.vpc_attributes.v_switch_id,
        security_group_id=inst.security_group_ids.security_group_id[0])).body
    c.ecs.attach_network_interface(em.AttachNetworkInterfaceRequest(
        region_id=REGION, instance_id=inst.instance_id, network_interface_id=eni.network_interface_id))
    wait(lambda: c.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
        region_id=REGION, network_interface_id=[eni.network_interface_id])).body.network_interface_sets
        .network_interface_set[0].status == "InUse", timeout=20)
    # the API says InUse now; the kernel is still 1.5 s behind
    invoke = c.ecs.run_command(em.RunCommandRequest(
        region_id=REGION, type="RunShellScript", instance_id=[inst.instance_id], timeout=60,
        command_content=base64.b64encode(b"cat /sys/class/net/*/address").decode(),
        content_encoding="Base64")).body.invoke_id

    def result() -> em.DescribeInvocationResultsResponseBodyInvocationInvocationResultsInvocationResult | None:
        rows = c.ecs.describe_invocation_results(em.DescribeInvocationResultsRequest(
            region_id=REGION, invoke_id=invoke, content_encoding="PlainText")).body.invocation \
            .invocation_results.invocation_result
        return rows[0] if rows and rows[0].invocation_status in ("Success", "Failed") else None

    wait(lambda: result() is not None, timeout=60)
    row = result()
    assert row is not None and row.invocation_status == "Success", row
    assert eni.mac_address.lower() in row.output.lower(), f"the NIC {eni.mac_address} was not there: {row.output}"
