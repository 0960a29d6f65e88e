"""`vpclab serve` as a process: the ready line contract, and state that survives kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alibabacloud_ecs20140526 import models as em
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as om
from alibabacloud_vpc20160428 import models as vm
from alibabacloud_vpc20160428.client import Client as VpcClient

from vpclab import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET

from .conftest import REGION, SEED
from .world_builder import wait


@contextmanager
def serve(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen, dict]]:
    proc = subprocess.Popen([sys.executable, "-m", "vpclab", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    ready: dict = {}
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise AssertionError(f"vpclab serve printed nothing; stderr: {proc.stderr.read()}")  # type: ignore[union-attr]
        ready = json.loads(line)
        yield proc, ready
    finally:
        # as root the lab has a data plane: stop it the way it cleans up after itself, and if it was
        # killed (the crash tests do), remove what it left
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait(timeout=10)
        if ready.get("lab"):
            subprocess.run([sys.executable, "-m", "vpclab", "clean", "--lab", ready["lab"]], capture_output=True,
                           timeout=120)


def clients(ready: dict, secret: str = DEFAULT_ACCESS_KEY_SECRET) -> tuple[EcsClient, VpcClient]:
    cfg = om.Config(access_key_id=ready["access_key_id"], access_key_secret=secret,
                    endpoint=ready["endpoint"].removeprefix("http://"), protocol="HTTP", read_timeout=10000)
    return EcsClient(cfg), VpcClient(cfg)


def test_ready_line_is_one_json_object_with_the_contract_keys() -> None:
    with serve("--scenario", str(SEED)) as (proc, ready):
        assert set(ready) >= {"endpoint", "region_id", "access_key_id"}
        assert ready["endpoint"].startswith("http://127.0.0.1:")
        assert (ready["region_id"], ready["access_key_id"]) == ("cn-hangzhou", DEFAULT_ACCESS_KEY_ID)
        ecs, _ = clients(ready)
        assert len(ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, page_size=50)
                                          ).body.instances.instance) == 7
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # type: ignore[union-attr]  # exactly one line, ever


def test_empty_cloud_with_custom_key_and_no_secret_in_output() -> None:
    secret = "s3cr3t-value-that-must-not-leak-7f1c"
    with serve(env={"VPCLAB_ACCESS_KEY_ID": "LTAI5tCustomKey000000001", "VPCLAB_ACCESS_KEY_SECRET": secret}
               ) as (proc, ready):
        assert ready["access_key_id"] == "LTAI5tCustomKey000000001"
        ecs, _ = clients(ready, secret)
        assert ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION)).body.instances.instance == []
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        out = proc.stdout.read() + proc.stderr.read()  # type: ignore[union-attr]
    assert secret not in out


def test_bad_scenario_exits_2_naming_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("vpcs:\n  - name: v\n    cidr: 10.0.0.0/16\n    vswitches: [{name: a, zone: cn-hangzhou-h, "
                   "cidr: 10.0.1.0/24}]\n    instances: [{name: x, vswitch: nope, security_groups: [sg]}]\n")
    proc = subprocess.run([sys.executable, "-m", "vpclab", "serve", "--scenario", str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert str(bad) in proc.stderr and "vpcs[0].instances[0]" in proc.stderr and "nope" in proc.stderr


@pytest.mark.parametrize("latency", ["instant", "realistic"])
def test_every_acknowledged_change_survives_kill_9(tmp_path: Path, latency: str) -> None:
    state = tmp_path / "state"
    args = ["--scenario", str(SEED), "--state-dir", str(state), "--latency", latency, "--time-scale", "0.05"]
    with serve(*args) as (proc, ready):
        ecs, vpc = clients(ready)
        inst = ecs.describe_instances(em.DescribeInstancesRequest(
            region_id=REGION, instance_name="web-1")).body.instances.instance[0]
        eni_id = ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=inst.vpc_attributes.v_switch_id,
            security_group_id=inst.security_group_ids.security_group_id[0], client_token="tok-1",
            description="made before the crash")).body.network_interface_id
        ecs.attach_network_interface(em.AttachNetworkInterfaceRequest(
            region_id=REGION, instance_id=inst.instance_id, network_interface_id=eni_id))
        ecs.convert_nat_public_ip_to_eip(em.ConvertNatPublicIpToEipRequest(region_id=REGION,
                                                                            instance_id=inst.instance_id))
        eip = vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION)).body
        proc.send_signal(signal.SIGKILL)  # no goodbye: whatever was acknowledged must be on disk
        proc.wait(timeout=10)
    with serve("--state-dir", str(state), "--latency", latency, "--time-scale", "0.05") as (proc, ready):
        ecs, vpc = clients(ready)
        assert ready["region_id"] == "cn-hangzhou"
        names = {i.instance_name for i in ecs.describe_instances(em.DescribeInstancesRequest(
            region_id=REGION, page_size=50)).body.instances.instance}
        assert len(names) == 7
        # the same ClientToken still answers with the same ENI: no duplicate after a crash
        again = ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
            region_id=REGION, v_switch_id=inst.vpc_attributes.v_switch_id,
            security_group_id=inst.security_group_ids.security_group_id[0], client_token="tok-1",
            description="made before the crash")).body.network_interface_id
        assert again == eni_id
        # transitions in flight at the crash complete after the restart
        wait(lambda: ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
            region_id=REGION, network_interface_id=[eni_id])).body.network_interface_sets.network_interface_set[0]
            .status == "InUse")
        wait(lambda: ecs.describe_instances(em.DescribeInstancesRequest(
            region_id=REGION, instance_name="web-1")).body.instances.instance[0].eip_address.ip_address
            == "203.0.113.10")
        eips = vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(region_id=REGION)).body.eip_addresses
        assert eip.allocation_id in {e.allocation_id for e in eips.eip_address}
        # new resources never reuse an address or id the old process handed out
        eip2 = vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION)).body
        assert eip2.eip_address != eip.eip_address and eip2.allocation_id != eip.allocation_id


def test_a_state_dir_from_another_schema_version_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from vpclab.store import Store

    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    db.commit()
    db.close()
    proc = subprocess.run([sys.executable, "-m", "vpclab", "serve", "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "schema version 999" in proc.stderr
