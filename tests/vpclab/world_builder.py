"""Build a small world through the API alone (as a user of the lab would), for tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from alibabacloud_ecs20140526 import models as em
from alibabacloud_vpc20160428 import models as vm

REGION = "cn-hangzhou"
ZONE = "cn-hangzhou-h"
IMAGE = "aliyun_3_x64_20G_alibase_20240819.vhd"


@dataclass
class Built:
    vpc_id: str
    vsw_id: str
    nat_vsw_id: str
    sg_id: str
    ngw_id: str
    snat_table_id: str
    nat_eip_id: str
    nat_ip: str
    route_table_id: str


def wait(pred, timeout: float = 10.0, interval: float = 0.02):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def build_network(ecs, vpc, cidr: str = "10.0.0.0/16", zone: str = ZONE) -> Built:
    r = vpc.create_vpc(vm.CreateVpcRequest(region_id=REGION, cidr_block=cidr, vpc_name="vpc-test")).body
    vpc_id, rt_id = r.vpc_id, r.route_table_id
    base = cidr.split(".")
    vsw_id = vpc.create_vswitch(vm.CreateVSwitchRequest(region_id=REGION, vpc_id=vpc_id, zone_id=zone,
                                                        cidr_block=f"{base[0]}.{base[1]}.1.0/24")).body.v_switch_id
    nat_vsw_id = vpc.create_vswitch(vm.CreateVSwitchRequest(region_id=REGION, vpc_id=vpc_id, zone_id=zone,
                                                            cidr_block=f"{base[0]}.{base[1]}.2.0/24")).body.v_switch_id
    sg_id = ecs.create_security_group(em.CreateSecurityGroupRequest(region_id=REGION, vpc_id=vpc_id)
                                      ).body.security_group_id
    ecs.authorize_security_group(em.AuthorizeSecurityGroupRequest(
        region_id=REGION, security_group_id=sg_id,
        permissions=[em.AuthorizeSecurityGroupRequestPermissions(ip_protocol="tcp", port_range="22/22",
                                                                 source_cidr_ip="0.0.0.0/0")]))
    wait(lambda: all(v.status == "Available" for v in vpc.describe_vswitches(
        vm.DescribeVSwitchesRequest(region_id=REGION, vpc_id=vpc_id)).body.v_switches.v_switch))
    ngw = vpc.create_nat_gateway(vm.CreateNatGatewayRequest(region_id=REGION, vpc_id=vpc_id, v_switch_id=nat_vsw_id,
                                                            nat_type="Enhanced")).body
    wait(lambda: vpc.describe_nat_gateways(vm.DescribeNatGatewaysRequest(
        region_id=REGION, nat_gateway_id=ngw.nat_gateway_id)).body.nat_gateways.nat_gateway[0].status == "Available")
    eip = vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION, bandwidth="100")).body
    vpc.associate_eip_address(vm.AssociateEipAddressRequest(region_id=REGION, allocation_id=eip.allocation_id,
                                                            instance_id=ngw.nat_gateway_id, instance_type="Nat"))
    wait(lambda: eip_status(vpc, eip.allocation_id) == "InUse")
    stb = ngw.snat_table_ids.snat_table_id[0]
    vpc.create_snat_entry(vm.CreateSnatEntryRequest(region_id=REGION, snat_table_id=stb, snat_ip=eip.eip_address,
                                                    source_vswitch_id=vsw_id))
    return Built(vpc_id, vsw_id, nat_vsw_id, sg_id, ngw.nat_gateway_id, stb, eip.allocation_id, eip.eip_address, rt_id)


def eip_status(vpc, allocation_id: str) -> str:
    rows = vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(region_id=REGION,
                                                                     allocation_id=allocation_id)).body
    return rows.eip_addresses.eip_address[0].status


def run_instance(ecs, b: Built, bw_out: int = 5, instance_type: str = "ecs.g7.large", **kw) -> str:
    req = em.RunInstancesRequest(region_id=REGION, image_id=IMAGE, instance_type=instance_type,
                                 v_switch_id=b.vsw_id, security_group_id=b.sg_id, internet_max_bandwidth_out=bw_out,
                                 **kw)
    iid = ecs.run_instances(req).body.instance_id_sets.instance_id_set[0]
    wait(lambda: instance(ecs, iid).status == "Running")
    return iid


def instance(ecs, iid: str):
    rows = ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION,
                                                              instance_ids=json.dumps([iid]))).body.instances.instance
    assert len(rows) == 1, f"{iid} not found"
    return rows[0]


def eni(ecs, eni_id: str):
    rows = ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
        region_id=REGION, network_interface_id=[eni_id])).body.network_interface_sets.network_interface_set
    return rows[0] if rows else None
