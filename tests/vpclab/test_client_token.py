"""ClientToken idempotency through the official SDK (research/aliyun-api.md §1).

Same token + same parameters → the first answer again and no new side effect; same token +
different parameters → ``IdempotentParameterMismatch`` (400); tokens are at most 64 ASCII
characters, scoped per action, and survive a restart of the lab.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from alibabacloud_ecs20140526 import models as em
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_vpc20160428 import models as vm

from vpclab import Lab

from .conftest import Clients
from .world_builder import IMAGE, REGION

ZONE = "cn-hangzhou-h"

SCENARIO: dict[str, Any] = {
    "region": REGION,
    "vpcs": [{
        "name": "vpc-ct",
        "cidr": "10.1.0.0/16",
        "vswitches": [{"name": "vsw", "zone": ZONE, "cidr": "10.1.1.0/24"}],
        "security_groups": [{"name": "sg"}],
        "instances": [{"name": "private", "vswitch": "vsw", "security_groups": ["sg"], "private_ip": "10.1.1.20"}],
    }],
}


@pytest.fixture
def c() -> Iterator[Clients]:
    with Lab(SCENARIO) as lab:
        yield Clients(lab)


def create_eni(c: Clients, token: str | None, description: str | None = None, name: str | None = None,
               ids: dict[str, Any] | None = None) -> str:
    ids = ids or c.lab.ids  # a restarted lab has no scenario ids: pass the first lab's
    return c.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=ids["vswitches"]["vsw"], security_group_id=ids["security_groups"]["sg"],
        description=description, network_interface_name=name, client_token=token)).body.network_interface_id


def secondary_enis(c: Clients) -> list[str]:
    rows = c.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
        region_id=REGION, type="Secondary", max_results=100)).body.network_interface_sets.network_interface_set
    return [r.network_interface_id for r in rows]


def all_instances(c: Clients) -> list[str]:
    rows = c.ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, page_size=100)).body
    return [i.instance_id for i in rows.instances.instance]


def run(c: Clients, token: str | None, amount: int = 1, name: str = "web") -> list[str]:
    return c.ecs.run_instances(em.RunInstancesRequest(
        region_id=REGION, image_id=IMAGE, instance_type="ecs.g7.large", v_switch_id=c.lab.ids["vswitches"]["vsw"],
        security_group_id=c.lab.ids["security_groups"]["sg"], amount=amount, instance_name=name,
        client_token=token)).body.instance_id_sets.instance_id_set


def error_of(fn: Any) -> ClientException:
    with pytest.raises(ClientException) as ei:
        fn()
    return ei.value


# --- CreateNetworkInterface -------------------------------------------------------------------------

def test_without_a_token_every_call_creates(c: Clients) -> None:
    # the control: the server really creates on each call, so the token tests below can fail
    a, b = create_eni(c, None), create_eni(c, None)
    assert a != b
    assert sorted(secondary_enis(c)) == sorted([a, b])


def test_same_token_same_params_returns_the_same_eni_and_creates_one(c: Clients) -> None:
    first = create_eni(c, "tok-eni-1", description="egress eni")
    again = create_eni(c, "tok-eni-1", description="egress eni")
    assert again == first
    assert secondary_enis(c) == [first]


def test_same_token_different_params_is_idempotent_parameter_mismatch(c: Clients) -> None:
    first = create_eni(c, "tok-eni-2", description="egress eni")
    e = error_of(lambda: create_eni(c, "tok-eni-2", description="another description"))
    assert (e.code, e.status_code) == ("IdempotentParameterMismatch", 400)
    # an added parameter is a different request too
    e = error_of(lambda: create_eni(c, "tok-eni-2", description="egress eni", name="eni-name"))
    assert (e.code, e.status_code) == ("IdempotentParameterMismatch", 400)
    assert secondary_enis(c) == [first]
    # and the original request is still answered with the original ENI
    assert create_eni(c, "tok-eni-2", description="egress eni") == first


def test_concurrent_retries_with_one_token_create_one_eni(c: Clients) -> None:
    # eight clients (eight connections) send the same request at the same moment
    clients = [Clients(c.lab) for _ in range(8)]
    barrier = threading.Barrier(len(clients))

    def one(cl: Clients) -> str:
        barrier.wait()
        return create_eni(cl, "tok-race", description="raced", ids=c.lab.ids)

    with ThreadPoolExecutor(len(clients)) as pool:
        got = list(pool.map(one, clients))
    assert len(set(got)) == 1
    assert secondary_enis(c) == got[:1]


def test_tokens_are_case_sensitive(c: Clients) -> None:
    a = create_eni(c, "Tok-Case")
    b = create_eni(c, "tok-case")
    assert a != b
    assert sorted(secondary_enis(c)) == sorted([a, b])


def test_token_longer_than_64_characters_is_refused(c: Clients) -> None:
    for bad in ("x" * 65, "jeton-été"):  # too long; not ASCII
        e = error_of(lambda bad=bad: create_eni(c, bad))
        assert e.status_code == 400
        assert "ClientToken" in e.code or "ClientToken" in (e.message or "")
    assert secondary_enis(c) == []
    # 64 is the documented limit and is accepted
    ok = create_eni(c, "y" * 64)
    assert create_eni(c, "y" * 64) == ok
    assert secondary_enis(c) == [ok]


def test_tokens_are_scoped_per_action(c: Clients) -> None:
    token = "shared-token-1"
    eni_id = create_eni(c, token)
    sg_id = c.ecs.create_security_group(em.CreateSecurityGroupRequest(
        region_id=REGION, vpc_id=c.lab.ids["vpcs"]["vpc-ct"], client_token=token)).body.security_group_id
    eip = c.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION, client_token=token)).body
    iids = run(c, token)
    assert eni_id.startswith("eni-") and sg_id.startswith("sg-") and eip.allocation_id.startswith("eip-")
    assert len(iids) == 1
    # each action still deduplicates its own retries
    assert create_eni(c, token) == eni_id
    assert c.ecs.create_security_group(em.CreateSecurityGroupRequest(
        region_id=REGION, vpc_id=c.lab.ids["vpcs"]["vpc-ct"], client_token=token)).body.security_group_id == sg_id
    assert c.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(
        region_id=REGION, client_token=token)).body.allocation_id == eip.allocation_id
    assert run(c, token) == iids
    assert secondary_enis(c) == [eni_id]


# --- RunInstances -------------------------------------------------------------------------------------

def test_run_instances_with_the_same_token_returns_the_same_ids(c: Clients) -> None:
    before = set(all_instances(c))
    first = run(c, "tok-run-1", amount=2)
    assert len(first) == 2
    assert run(c, "tok-run-1", amount=2) == first
    assert set(all_instances(c)) == before | set(first)
    e = error_of(lambda: run(c, "tok-run-1", amount=3))
    assert (e.code, e.status_code) == ("IdempotentParameterMismatch", 400)
    assert set(all_instances(c)) == before | set(first)


# --- AssociateEipAddress ----------------------------------------------------------------------------

def _eip(c: Clients, aid: str) -> Any:
    return c.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(
        region_id=REGION, allocation_id=aid)).body.eip_addresses.eip_address[0]


def _associate(c: Clients, aid: str, iid: str, token: str | None) -> None:
    c.vpc.associate_eip_address(vm.AssociateEipAddressRequest(region_id=REGION, allocation_id=aid, instance_id=iid,
                                                              instance_type="EcsInstance", client_token=token))


def test_associate_retried_with_the_same_token_after_success_succeeds(c: Clients) -> None:
    iid = c.lab.ids["instances"]["private"]
    aid = c.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION)).body.allocation_id
    _associate(c, aid, iid, "tok-assoc-1")
    assert _eip(c, aid).status == "InUse"
    _associate(c, aid, iid, "tok-assoc-1")  # a retry after a lost answer: must not fail
    row = _eip(c, aid)
    assert (row.status, row.instance_id) == ("InUse", iid)
    # the control: a new request (no token) for the same association is refused by the EIP's state
    e = error_of(lambda: _associate(c, aid, iid, None))
    assert e.code == "IncorrectEipStatus"
    # unassociate is idempotent the same way
    for _ in range(2):
        c.vpc.unassociate_eip_address(vm.UnassociateEipAddressRequest(
            region_id=REGION, allocation_id=aid, instance_id=iid, client_token="tok-unassoc-1"))
    assert _eip(c, aid).status == "Available"


def test_associate_retried_while_still_associating_succeeds(tmp_path: Path) -> None:
    profile = tmp_path / "slow-eip.yaml"
    profile.write_text(yaml.safe_dump({"operations": {"eip.associate": {"base": 30.0}}}))
    with Lab(SCENARIO, latency=str(profile)) as lab:
        c = Clients(lab)
        iid = lab.ids["instances"]["private"]
        aid = c.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION)).body.allocation_id
        _associate(c, aid, iid, "tok-assoc-2")
        assert _eip(c, aid).status == "Associating"
        _associate(c, aid, iid, "tok-assoc-2")
        assert _eip(c, aid).status == "Associating"
        assert error_of(lambda: _associate(c, aid, iid, None)).code == "IncorrectEipStatus"


# --- ModifyInstanceChargeType ------------------------------------------------------------------------

def test_modify_charge_type_retried_with_the_same_token_succeeds(c: Clients) -> None:
    iid = run(c, None)[0]

    def modify(token: str | None, target: str = "PrePaid") -> None:
        c.ecs.modify_instance_charge_type(em.ModifyInstanceChargeTypeRequest(
            region_id=REGION, instance_ids=json.dumps([iid]), instance_charge_type=target, client_token=token))

    modify("tok-charge-1")
    modify("tok-charge-1")
    assert error_of(lambda: modify(None)).code == "InvalidInstanceChargeType.ValueNotSupported"  # already PrePaid
    assert error_of(lambda: modify("tok-charge-1", "PostPaid")).code == "IdempotentParameterMismatch"


# --- persistence -------------------------------------------------------------------------------------

def test_token_survives_a_lab_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Lab(SCENARIO, state_dir=state) as lab:
        c = Clients(lab)
        ids = lab.ids
        first = create_eni(c, "tok-restart", description="before restart")
        assert secondary_enis(c) == [first]
    with Lab(state_dir=state) as lab:
        c = Clients(lab)
        assert secondary_enis(c) == [first]
        assert create_eni(c, "tok-restart", description="before restart", ids=ids) == first
        assert secondary_enis(c) == [first]
        e = error_of(lambda: create_eni(c, "tok-restart", description="after restart", ids=ids))
        assert e.code == "IdempotentParameterMismatch"
        # a fresh token still creates
        other = create_eni(c, "tok-restart-2", ids=ids)
        assert sorted(secondary_enis(c)) == sorted([first, other])
