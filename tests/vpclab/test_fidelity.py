"""Every action's answer, as the server sent it, read back through the SDK's own model.

``from_map`` drops unknown keys silently and never checks types, so a misspelled or mistyped field
would pass every client test.  Here each raw response body must (1) survive ``from_map`` then
``to_map`` without losing a key, and (2) match the model's field names and value types exactly.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as em
from alibabacloud_sts20150401 import models as sm
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_vpc20160428 import models as vm

from vpclab.actions import ACTIONS

from . import sdk_schema
from .conftest import Clients, sdk_config
from .world_builder import IMAGE, REGION, build_network, eni, run_instance, wait


def _lost_keys(original: Any, back: Any, path: str = "") -> list[str]:
    lost = []
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [path or "<body>"]
        for k, v in original.items():
            here = f"{path}.{k}" if path else k
            if k not in back:
                lost.append(here)
            else:
                lost += _lost_keys(v, back[k], here)
    elif isinstance(original, list) and original and isinstance(original[0], (dict, list)):
        if not isinstance(back, list) or len(back) != len(original):
            return [path]
        for i, (a, b) in enumerate(zip(original, back, strict=True)):
            lost += _lost_keys(a, b, f"{path}[{i}]")
    return lost


@pytest.fixture
def recorded(clients: Clients) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Wrap the lab's protocol handler to keep every raw 200 body, keyed by (service, action)."""
    api = clients.lab.api
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    original = api.handle

    def handle(method: str, target: str, headers: list[tuple[str, str]], body: bytes):
        status, h, payload = original(method, target, headers, body)
        lower = {k.lower(): v for k, v in headers}
        service = {"2014-05-26": "ecs", "2016-04-28": "vpc", "2015-04-01": "sts"}[lower.get("x-acs-version", "")]
        if status == 200:
            seen.setdefault((service, lower.get("x-acs-action", "")), []).append(json.loads(payload))
        return status, h, payload

    api.handle = handle  # type: ignore[method-assign]
    return seen


def exercise_everything(c: Clients) -> None:
    ecs, vpc = c.ecs, c.vpc
    StsClient(sdk_config(c.lab)).get_caller_identity()
    ecs.describe_regions(em.DescribeRegionsRequest())
    vpc.describe_regions(vm.DescribeRegionsRequest())
    ecs.describe_zones(em.DescribeZonesRequest(region_id=REGION))
    ecs.describe_instance_types(em.DescribeInstanceTypesRequest(instance_types=["ecs.g7.large"]))
    ecs.describe_images(em.DescribeImagesRequest(region_id=REGION))
    b = build_network(ecs, vpc)
    vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION))
    vpc.describe_vswitches(vm.DescribeVSwitchesRequest(region_id=REGION))
    vpc.describe_route_table_list(vm.DescribeRouteTableListRequest(region_id=REGION, vpc_id=b.vpc_id))
    wait(lambda: vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
        region_id=REGION, route_table_id=b.route_table_id)).body.route_entrys.route_entry)
    rte = vpc.create_route_entry(vm.CreateRouteEntryRequest(region_id=REGION, route_table_id=b.route_table_id,
                                                            destination_cidr_block="10.99.0.0/16",
                                                            next_hop_type="NatGateway", next_hop_id=b.ngw_id)).body
    wait(lambda: vpc.describe_route_entry_list(vm.DescribeRouteEntryListRequest(
        region_id=REGION, route_table_id=b.route_table_id, route_entry_id=rte.route_entry_id)
    ).body.route_entrys.route_entry[0].status == "Available")
    vpc.delete_route_entry(vm.DeleteRouteEntryRequest(region_id=REGION, route_entry_id=rte.route_entry_id))
    vpc.describe_nat_gateways(vm.DescribeNatGatewaysRequest(region_id=REGION))
    vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(region_id=REGION, snat_table_id=b.snat_table_id))
    vpc.describe_forward_table_entries(vm.DescribeForwardTableEntriesRequest(region_id=REGION,
                                                                             nat_gateway_id=b.ngw_id))
    ecs.describe_security_groups(em.DescribeSecurityGroupsRequest(region_id=REGION))
    ecs.describe_security_group_attribute(em.DescribeSecurityGroupAttributeRequest(region_id=REGION,
                                                                                  security_group_id=b.sg_id))
    iid = run_instance(ecs, b)
    ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION))
    ecs.convert_nat_public_ip_to_eip(em.ConvertNatPublicIpToEipRequest(region_id=REGION, instance_id=iid))
    from .world_builder import instance

    eip_id = wait(lambda: instance(ecs, iid).eip_address.allocation_id)
    vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(region_id=REGION))
    eni_id = ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=b.vsw_id, security_group_id=b.sg_id, client_token="fid-1",
        tag=[em.CreateNetworkInterfaceRequestTag(key="owner", value="egressctl")])).body.network_interface_id
    ecs.attach_network_interface(em.AttachNetworkInterfaceRequest(region_id=REGION, instance_id=iid,
                                                                  network_interface_id=eni_id))
    wait(lambda: eni(ecs, eni_id).status == "InUse")
    ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, instance_ids=json.dumps([iid])))
    vpc.unassociate_eip_address(vm.UnassociateEipAddressRequest(region_id=REGION, allocation_id=eip_id,
                                                                instance_id=iid))
    from .world_builder import eip_status

    wait(lambda: eip_status(vpc, eip_id) == "Available")
    eni_ip = eni(ecs, eni_id).private_ip_address
    vpc.associate_eip_address(vm.AssociateEipAddressRequest(region_id=REGION, allocation_id=eip_id, instance_id=eni_id,
                                                            instance_type="NetworkInterface",
                                                            private_ip_address=eni_ip))
    wait(lambda: eip_status(vpc, eip_id) == "InUse")
    ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(region_id=REGION))
    vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(region_id=REGION, allocation_id=eip_id))
    ecs.run_command(em.RunCommandRequest(region_id=REGION, type="RunShellScript", instance_id=[iid],
                                         command_content=base64.b64encode(b"echo hi").decode(),
                                         content_encoding="Base64", timeout=60))
    ecs.describe_invocations(em.DescribeInvocationsRequest(region_id=REGION, include_output=True))
    ecs.describe_invocation_results(em.DescribeInvocationResultsRequest(region_id=REGION))
    ecs.describe_cloud_assistant_status(em.DescribeCloudAssistantStatusRequest(region_id=REGION, instance_id=[iid]))
    ecs.tag_resources(em.TagResourcesRequest(region_id=REGION, resource_type="instance", resource_id=[iid],
                                             tag=[em.TagResourcesRequestTag(key="k", value="v")]))
    ecs.list_tag_resources(em.ListTagResourcesRequest(region_id=REGION, resource_type="instance",
                                                      resource_id=[iid]))
    ecs.untag_resources(em.UntagResourcesRequest(region_id=REGION, resource_type="instance", resource_id=[iid],
                                                 tag_key=["k"]))
    vpc.tag_resources(vm.TagResourcesRequest(region_id=REGION, resource_type="VPC", resource_id=[b.vpc_id],
                                             tag=[vm.TagResourcesRequestTag(key="k", value="v")]))
    vpc.list_tag_resources(vm.ListTagResourcesRequest(region_id=REGION, resource_type="VPC",
                                                      resource_id=[b.vpc_id]))
    vpc.unassociate_eip_address(vm.UnassociateEipAddressRequest(region_id=REGION, allocation_id=eip_id,
                                                                instance_id=eni_id, instance_type="NetworkInterface"))
    wait(lambda: eip_status(vpc, eip_id) == "Available")
    ecs.detach_network_interface(em.DetachNetworkInterfaceRequest(region_id=REGION, instance_id=iid,
                                                                  network_interface_id=eni_id))
    wait(lambda: eni(ecs, eni_id).status == "Available")
    ecs.delete_network_interface(em.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=eni_id))
    vpc.release_eip_address(vm.ReleaseEipAddressRequest(region_id=REGION, allocation_id=eip_id))
    iid2 = run_instance(ecs, b, bw_out=0, instance_charge_type="PrePaid")
    ecs.modify_instance_charge_type(em.ModifyInstanceChargeTypeRequest(
        region_id=REGION, instance_ids=json.dumps([iid2]), instance_charge_type="PostPaid"))
    ecs.reboot_instance(em.RebootInstanceRequest(instance_id=iid))
    wait(lambda: instance(ecs, iid).status == "Running")
    ecs.stop_instance(em.StopInstanceRequest(instance_id=iid))
    wait(lambda: instance(ecs, iid).status == "Stopped")
    ecs.start_instance(em.StartInstanceRequest(instance_id=iid))
    wait(lambda: instance(ecs, iid).status == "Running")
    ecs.delete_instance(em.DeleteInstanceRequest(instance_id=iid, force=True))
    entries = vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(
        region_id=REGION, snat_table_id=b.snat_table_id)).body.snat_table_entries.snat_table_entry
    wait(lambda: vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(
        region_id=REGION, snat_table_id=b.snat_table_id)).body.snat_table_entries.snat_table_entry[0].status
        == "Available")
    vpc.delete_snat_entry(vm.DeleteSnatEntryRequest(region_id=REGION, snat_table_id=b.snat_table_id,
                                                    snat_entry_id=entries[0].snat_entry_id))
    assert IMAGE


def _body_class(service: str, action: str) -> type:
    mod = {"ecs": em, "vpc": vm, "sts": sm}[service]
    return getattr(mod, f"{action}ResponseBody")


def test_every_action_answers_in_the_sdk_models_own_shape(clients: Clients, recorded: dict) -> None:
    exercise_everything(clients)
    missing = sorted(f"{s}:{a}" for (s, a) in ACTIONS if (s, a) not in recorded and s != "lab")
    assert not missing, f"actions not exercised by the fidelity test: {missing}"
    problems = []
    for (service, action), bodies in sorted(recorded.items()):
        cls = _body_class(service, action)
        for body in bodies:
            problems += [f"{service}:{action}: {p}" for p in sdk_schema.check(cls, body)]
            back = cls().from_map(body).to_map()
            problems += [f"{service}:{action}: lost in from_map/to_map: {k}" for k in _lost_keys(body, back)]
    assert not problems, "\n".join(problems[:50])


def test_schema_check_catches_a_misspelled_and_a_mistyped_field() -> None:
    # the check itself must be able to fail
    bad = {"RequestId": "x", "Instances": {"Instance": [{"InstanceId": "i-1", "PublicIpAdress": {},
                                                         "InternetMaxBandwidthOut": "5"}]}}
    problems = sdk_schema.check(em.DescribeInstancesResponseBody, bad)
    assert any("PublicIpAdress" in p for p in problems)
    assert any("InternetMaxBandwidthOut" in p for p in problems)
