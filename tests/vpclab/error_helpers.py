"""Shared helpers for the error matrix (test_errors_ecs.py, test_errors_vpc.py).

Every refusal is observed the way a client observes it: through the official SDK, as the
exception it raises, with the cloud's ``Code`` and the HTTP status (aliyun-api.md §1).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from alibabacloud_ecs20140526 import models as em
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ClientException, ServerException
from alibabacloud_vpc20160428 import models as vm

from vpclab import Lab

from .conftest import SEED, Clients
from .world_builder import IMAGE, REGION, ZONE, wait

OTHER_ZONE = "cn-hangzhou-i"


def expect_error(fn: Callable[[], Any], code: str, status: int) -> AlibabaCloudException:
    """Call ``fn`` (one SDK call) and assert it is refused with exactly ``code`` and ``status``.

    4xx must surface as the SDK's ``ClientException`` and 5xx as ``ServerException``: that is what
    a client's retry logic keys on.
    """
    with pytest.raises(AlibabaCloudException) as info:
        fn()
    e = info.value
    got = (e.code, e.status_code)
    assert got == (code, status), f"expected {code} {status}, got {e.code} {e.status_code}: {e.message}"
    expected_cls = ClientException if status < 500 else ServerException
    assert isinstance(e, expected_cls), f"{type(e).__name__} for HTTP {status}"
    return e


def stop_quickly(lab: Lab) -> None:
    """``lab.stop()`` without sitting out the HTTP server's 0.2 s poll: poke the listening socket
    until the stop completes (a poke only wakes ``serve_forever`` so it sees the shutdown flag)."""
    server = lab.server
    if server is None:
        return
    stopper = threading.Thread(target=lab.stop, name="error-matrix-stop")
    stopper.start()
    while stopper.is_alive():
        with suppress(OSError):
            socket.create_connection((server.host, server.port), timeout=0.05).close()
        stopper.join(0.005)


@contextmanager
def seed_clients(**lab_kw: Any) -> Iterator[Clients]:
    """The seed world (scenarios/seed.yaml) in its own lab, e.g. ``latency="realistic"``."""
    lab = Lab(SEED, **lab_kw).start()
    try:
        yield Clients(lab)
    finally:
        stop_quickly(lab)


class Seed:
    """Names of the seed world → ids, plus the calls the matrix needs over and over."""

    def __init__(self, c: Clients):
        self.c = c
        self.ecs = c.ecs
        self.vpc = c.vpc
        ids = c.lab.ids
        self.vpc_id: str = ids["vpcs"]["vpc-seed"]
        self.vsw_app: str = ids["vswitches"]["vsw-app"]
        self.vsw_nat: str = ids["vswitches"]["vsw-nat"]
        self.sg: str = ids["security_groups"]["sg-web"]
        self.ngw: str = ids["nat_gateways"]["ngw-seed"]
        self.inst: dict[str, str] = dict(ids["instances"])

    # -- lookups ------------------------------------------------------------------------------
    def nat(self) -> Any:
        return self.vpc.describe_nat_gateways(vm.DescribeNatGatewaysRequest(
            region_id=REGION, nat_gateway_id=self.ngw)).body.nat_gateways.nat_gateway[0]

    @property
    def snat_table(self) -> str:
        return self.nat().snat_table_ids.snat_table_id[0]

    @property
    def forward_table(self) -> str:
        return self.nat().forward_table_ids.forward_table_id[0]

    @property
    def route_table(self) -> str:
        vpc = self.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION, vpc_id=self.vpc_id)).body.vpcs.vpc[0]
        return vpc.router_table_ids.router_table_ids[0]

    def snat_entries(self) -> list[Any]:
        return self.vpc.describe_snat_table_entries(vm.DescribeSnatTableEntriesRequest(
            region_id=REGION, snat_table_id=self.snat_table)).body.snat_table_entries.snat_table_entry

    def snat_status(self, entry_id: str) -> str | None:
        rows = [s for s in self.snat_entries() if s.snat_entry_id == entry_id]
        return rows[0].status if rows else None

    def instance(self, iid: str) -> Any:
        rows = self.ecs.describe_instances(em.DescribeInstancesRequest(
            region_id=REGION, instance_ids=json.dumps([iid]))).body.instances.instance
        assert len(rows) == 1, f"{iid} not found"
        return rows[0]

    def status(self, iid: str) -> str:
        return self.instance(iid).status

    def eni(self, eni_id: str) -> Any:
        rows = self.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
            region_id=REGION, network_interface_id=[eni_id])).body.network_interface_sets.network_interface_set
        return rows[0] if rows else None

    def eni_status(self, eni_id: str) -> str | None:
        e = self.eni(eni_id)
        return e.status if e is not None else None

    def eip(self, allocation_id: str) -> Any:
        rows = self.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
            region_id=REGION, allocation_id=allocation_id)).body.eip_addresses.eip_address
        return rows[0] if rows else None

    def eip_status(self, allocation_id: str) -> str | None:
        e = self.eip(allocation_id)
        return e.status if e is not None else None

    def eip_of_instance(self, iid: str) -> str:
        rows = self.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
            region_id=REGION, associated_instance_id=iid)).body.eip_addresses.eip_address
        assert len(rows) == 1, f"{iid} has no EIP"
        return rows[0].allocation_id

    def vswitch(self, vsw_id: str) -> Any:
        return self.vpc.describe_vswitches(vm.DescribeVSwitchesRequest(
            region_id=REGION, v_switch_id=vsw_id)).body.v_switches.v_switch[0]

    def available_ips(self, vsw_id: str) -> int:
        return self.vswitch(vsw_id).available_ip_address_count

    # -- actions ------------------------------------------------------------------------------
    def create_eni(self, vsw_id: str | None = None, sg_id: str | None = None, **kw: Any) -> str:
        return self.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=vsw_id or self.vsw_app, security_group_id=sg_id or self.sg,
            **kw)).body.network_interface_id

    def attach(self, iid: str, eni_id: str) -> None:
        self.ecs.attach_network_interface(em.AttachNetworkInterfaceRequest(
            region_id=REGION, instance_id=iid, network_interface_id=eni_id))

    def attach_and_wait(self, iid: str, eni_id: str, timeout: float = 10.0) -> None:
        self.attach(iid, eni_id)
        wait(lambda: self.eni_status(eni_id) == "InUse", timeout)

    def detach(self, iid: str, eni_id: str) -> None:
        self.ecs.detach_network_interface(em.DetachNetworkInterfaceRequest(
            region_id=REGION, instance_id=iid, network_interface_id=eni_id))

    def delete_eni(self, eni_id: str) -> None:
        self.ecs.delete_network_interface(em.DeleteNetworkInterfaceRequest(region_id=REGION,
                                                                           network_interface_id=eni_id))

    def create_vswitch(self, cidr: str, zone: str = ZONE, vpc_id: str | None = None) -> str:
        return self.vpc.create_vswitch(vm.CreateVSwitchRequest(
            region_id=REGION, vpc_id=vpc_id or self.vpc_id, zone_id=zone, cidr_block=cidr)).body.v_switch_id

    def run(self, instance_type: str = "ecs.g7.large", vsw_id: str | None = None, wait_running: bool = True,
            **kw: Any) -> str:
        iid = self.ecs.run_instances(em.RunInstancesRequest(
            region_id=REGION, image_id=IMAGE, instance_type=instance_type, v_switch_id=vsw_id or self.vsw_app,
            security_group_id=kw.pop("security_group_id", self.sg), **kw)).body.instance_id_sets.instance_id_set[0]
        if wait_running:
            wait(lambda: self.status(iid) == "Running")
        return iid

    def stop(self, iid: str) -> None:
        self.ecs.stop_instance(em.StopInstanceRequest(instance_id=iid))

    def stop_and_wait(self, iid: str, timeout: float = 10.0) -> None:
        self.stop(iid)
        wait(lambda: self.status(iid) == "Stopped", timeout)

    def start_and_wait(self, iid: str, timeout: float = 10.0) -> None:
        self.ecs.start_instance(em.StartInstanceRequest(instance_id=iid))
        wait(lambda: self.status(iid) == "Running", timeout)

    def allocate(self, **kw: Any) -> tuple[str, str]:
        r = self.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION, **kw)).body
        return r.allocation_id, r.eip_address

    def associate(self, allocation_id: str, instance_id: str, instance_type: str = "EcsInstance",
                  **kw: Any) -> None:
        self.vpc.associate_eip_address(vm.AssociateEipAddressRequest(
            region_id=REGION, allocation_id=allocation_id, instance_id=instance_id, instance_type=instance_type,
            **kw))

    def unassociate(self, allocation_id: str, **kw: Any) -> None:
        self.vpc.unassociate_eip_address(vm.UnassociateEipAddressRequest(
            region_id=REGION, allocation_id=allocation_id, **kw))

    def release(self, allocation_id: str) -> None:
        self.vpc.release_eip_address(vm.ReleaseEipAddressRequest(region_id=REGION, allocation_id=allocation_id))

    def other_vpc(self, cidr: str = "172.16.0.0/16", zone: str = ZONE) -> tuple[str, str, str]:
        """A second VPC with a vSwitch (/24) and a security group: (vpc, vswitch, sg)."""
        vpc_id = self.vpc.create_vpc(vm.CreateVpcRequest(region_id=REGION, cidr_block=cidr)).body.vpc_id
        base = cidr.split(".")
        vsw = self.create_vswitch(f"{base[0]}.{base[1]}.1.0/24", zone=zone, vpc_id=vpc_id)
        sg = self.ecs.create_security_group(em.CreateSecurityGroupRequest(region_id=REGION,
                                                                          vpc_id=vpc_id)).body.security_group_id
        return vpc_id, vsw, sg
