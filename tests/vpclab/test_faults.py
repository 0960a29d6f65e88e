"""Fault injection (issue 6): each fault kind has its effect through the unmodified SDK, the plan is off
by default, it comes from ``vpclab serve --faults FILE`` or the signed admin actions ``SetFaults`` /
``GetFaults`` (version ``vpclab``), and those refuse unsigned or wrongly signed calls like any request."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from alibabacloud_ecs20140526 import models as em
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import exceptions as tea_exc
from alibabacloud_tea_openapi import utils_models as open_api_util_models
from alibabacloud_vpc20160428 import models as vm
from alibabacloud_vpc20160428.client import Client as VpcClient
from darabonba.runtime import RuntimeOptions

from vpclab import Lab
from vpclab.faults import KINDS, FaultError, Faults, parse_rules
from vpclab.resources.eips import Eip

from .conftest import REGION, SEED, sdk_config


class Sdk:
    def __init__(self, lab: Lab, secret: str | None = None):
        kw = {"secret": secret} if secret else {}
        self.lab = lab
        self.ecs = EcsClient(sdk_config(lab, **kw))
        self.vpc = VpcClient(sdk_config(lab, **kw))

    def admin(self, action: str, **query: str) -> dict[str, Any]:
        """The lab's admin actions through the SDK's generic RPC call: signed like every request."""
        params = open_api_util_models.Params(action=action, version="vpclab", protocol="HTTP", pathname="/",
                                             method="POST", auth_type="AK", style="RPC", req_body_type="formData",
                                             body_type="json")
        req = open_api_util_models.OpenApiRequest(query={"RegionId": REGION, **query})
        return self.ecs.call_api(params, req, RuntimeOptions())["body"]

    def set_faults(self, rules: list[dict[str, Any]], seed: int | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"rules": rules}
        if seed is not None:
            doc["seed"] = seed
        return self.admin("SetFaults", Faults=json.dumps(doc))

    def get_faults(self) -> dict[str, Any]:
        return self.admin("GetFaults")

    def describe_vpcs(self) -> Any:
        return self.vpc.describe_vpcs(vm.DescribeVpcsRequest(region_id=REGION))

    def describe_zones(self) -> Any:
        return self.ecs.describe_zones(em.DescribeZonesRequest(region_id=REGION))


@pytest.fixture
def flab() -> Iterator[Lab]:
    with Lab(SEED, faults=Faults()) as lab:
        yield lab


@pytest.fixture
def sdk(flab: Lab) -> Sdk:
    return Sdk(flab)


def _eips(lab: Lab) -> set[str]:
    with lab.world.lock:
        return {e.id for e in lab.world.all(Eip)}


def _outcome(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except tea_exc.ThrottlingException as e:
        return f"throttled:{e.code}"
    except tea_exc.AlibabaCloudException as e:
        return f"error:{e.code}:{e.status_code}"
    except Exception as e:  # transport: the connection dropped
        return f"transport:{type(e).__name__}"
    return "ok"


# --- off by default -------------------------------------------------------------------------------------

def test_faults_are_off_by_default(seed_lab: Lab) -> None:
    sdk = Sdk(seed_lab)
    assert seed_lab.faults.rules == []
    assert sdk.get_faults() | {"RequestId": ""} == {"Rules": [], "Fired": {}, "RequestId": ""}
    outcomes = {_outcome(sdk.describe_vpcs) for _ in range(50)} | {_outcome(sdk.describe_zones) for _ in range(50)}
    assert outcomes == {"ok"}
    assert seed_lab.faults.counts() == {}


# --- each kind through the SDK ------------------------------------------------------------------------

def test_error_fails_the_call_before_it_is_applied(sdk: Sdk, flab: Lab) -> None:
    sdk.set_faults([{"kind": "error", "actions": "AllocateEipAddress"}])
    before = _eips(flab)
    with pytest.raises(tea_exc.ServerException) as e:
        sdk.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION, client_token="fault-err-1"))
    assert (e.value.code, e.value.status_code) == ("ServiceUnavailable", 503)
    assert _eips(flab) == before, "a failed call must not be applied"
    sdk.describe_vpcs()  # another action is not affected
    sdk.set_faults([{"kind": "error", "actions": "Describe*", "code": "InternalError"}])
    with pytest.raises(tea_exc.ServerException) as e:
        sdk.describe_vpcs()
    assert (e.value.code, e.value.status_code) == ("InternalError", 500)
    assert e.value.request_id  # the gateway's error shape, with a request id
    sdk.set_faults([{"kind": "error", "actions": "DescribeZones", "code": "SystemBusy", "status": 502}])
    assert _outcome(sdk.describe_zones) == "error:SystemBusy:502"
    assert sdk.get_faults()["Fired"] == {"error:DescribeZones": 1}


def test_error_rate_is_honoured_and_reproducible_with_a_seed(sdk: Sdk, flab: Lab) -> None:
    rules = [{"kind": "error", "actions": "DescribeVpcs", "rate": 0.3}]
    patterns = []
    for _ in range(2):
        sdk.set_faults(rules, seed=42)
        patterns.append([_outcome(sdk.describe_vpcs) for _ in range(200)])
    assert patterns[0] == patterns[1], "the same seed must give the same faults"
    failed = patterns[0].count("error:ServiceUnavailable:503")
    assert failed + patterns[0].count("ok") == 200
    assert 30 <= failed <= 90, failed  # 0.3 of 200, with a wide margin
    assert sdk.get_faults()["Fired"] == {"error:DescribeVpcs": failed}
    sdk.set_faults(rules, seed=43)
    assert [_outcome(sdk.describe_vpcs) for _ in range(200)] != patterns[0]


def test_throttle_burst(sdk: Sdk, flab: Lab) -> None:
    sdk.set_faults([{"kind": "throttle", "actions": "DescribeVpcs", "rate": 0.3, "burst_s": 1.0,
                     "retry_after_ms": 350}], seed=5)
    for _ in range(200):
        try:
            sdk.describe_vpcs()
        except tea_exc.ThrottlingException as e:
            assert (e.code, e.status_code) == ("Throttling.User", 400)
            assert e.retry_after == 350
            fired = time.monotonic()
            break
    else:
        pytest.fail("the throttle rule never fired")
    # a burst: every call of that action in the next second is throttled, whatever the dice say
    while time.monotonic() - fired < 0.7:
        assert _outcome(sdk.describe_vpcs) == "throttled:Throttling.User"
    assert _outcome(sdk.describe_zones) == "ok"  # per action
    time.sleep(max(0.0, 1.1 - (time.monotonic() - fired)))
    # after the burst the rate applies again: some calls go through
    outcomes = []
    for _ in range(20):
        outcomes.append(_outcome(sdk.describe_vpcs))
        if outcomes[-1] == "ok":
            break
        time.sleep(1.05)
    assert outcomes[-1] == "ok", outcomes


def test_latency_delays_the_answer(sdk: Sdk) -> None:
    sdk.set_faults([{"kind": "latency", "actions": "DescribeVpcs", "min_ms": 300, "max_ms": 400}])
    t = time.monotonic()
    sdk.describe_vpcs()
    assert time.monotonic() - t >= 0.3
    t = time.monotonic()
    sdk.describe_zones()
    assert time.monotonic() - t < 0.25
    assert sdk.get_faults()["Fired"] == {"latency:DescribeVpcs": 1}


def test_lost_response_applies_the_change_then_drops_the_answer(sdk: Sdk, flab: Lab) -> None:
    sdk.set_faults([{"kind": "lost_response", "actions": "AllocateEipAddress"}])
    before = _eips(flab)
    req = vm.AllocateEipAddressRequest(region_id=REGION, client_token="fault-lost-1", name="lost")
    assert _outcome(lambda: sdk.vpc.allocate_eip_address(req)).startswith("transport:")
    created = _eips(flab) - before
    assert len(created) == 1, "the change was applied although the answer was lost"
    # the client sends it again with the same ClientToken: the same EIP, not a second one
    sdk.set_faults([])
    again = sdk.vpc.allocate_eip_address(req).body.allocation_id
    assert {again} == created and _eips(flab) - before == created
    # without a ClientToken a retry would create a second one: that is the caller's risk, not the lab's
    sdk.set_faults([{"kind": "lost_response", "actions": "AllocateEipAddress"}])
    assert _outcome(lambda: sdk.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION))
                    ).startswith("transport:")
    assert len(_eips(flab) - before) == 2


def test_sticky_transitional_state(sdk: Sdk, flab: Lab) -> None:
    sdk.set_faults([{"kind": "sticky", "ops": ["eni.attach"], "extra_s": 0.8}])
    vsw = flab.ids["vswitches"]["vsw-app"]
    sg = flab.ids["security_groups"]["sg-web"]
    web1 = flab.ids["instances"]["web-1"]
    created = sdk.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=vsw, security_group_id=sg)).body
    eni = created.network_interface_id
    t = time.monotonic()
    sdk.ecs.attach_network_interface(em.AttachNetworkInterfaceRequest(region_id=REGION, instance_id=web1,
                                                                      network_interface_id=eni))

    def status() -> str:
        return sdk.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
            region_id=REGION, network_interface_id=[eni])).body.network_interface_sets.network_interface_set[0].status

    assert status() == "Attaching"
    # a mutating call during the transition answers like the cloud does
    with pytest.raises(tea_exc.ClientException) as e:
        sdk.ecs.detach_network_interface(em.DetachNetworkInterfaceRequest(region_id=REGION, instance_id=web1,
                                                                          network_interface_id=eni))
    assert e.value.code == "InvalidOperation.InvalidEniState"
    while status() == "Attaching":
        assert time.monotonic() - t < 5, "the sticky state never ended"
        time.sleep(0.05)
    assert time.monotonic() - t >= 0.7
    assert status() == "InUse"
    # another operation is not slowed down
    eip = sdk.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION)).body.allocation_id
    sdk.vpc.associate_eip_address(vm.AssociateEipAddressRequest(region_id=REGION, allocation_id=eip,
                                                                instance_id=eni, instance_type="NetworkInterface",
                                                                private_ip_address=created.private_ip_address))
    eips = sdk.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(region_id=REGION, allocation_id=eip))
    assert eips.body.eip_addresses.eip_address[0].status == "InUse"
    assert sdk.get_faults()["Fired"] == {"sticky:eni.attach": 1}


def test_stale_describe_lags_behind_a_create(sdk: Sdk, flab: Lab) -> None:
    sdk.set_faults([{"kind": "stale_describe", "actions": "Describe*", "lag_s": 0.8}])
    vsw = flab.ids["vswitches"]["vsw-app"]
    sg = flab.ids["security_groups"]["sg-web"]
    t = time.monotonic()
    eip = sdk.vpc.allocate_eip_address(vm.AllocateEipAddressRequest(region_id=REGION)).body.allocation_id
    eni = sdk.ecs.create_network_interface(em.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=vsw, security_group_id=sg)).body.network_interface_id

    def seen() -> tuple[bool, bool]:
        e = sdk.vpc.describe_eip_addresses(vm.DescribeEipAddressesRequest(region_id=REGION, allocation_id=eip))
        n = sdk.ecs.describe_network_interfaces(em.DescribeNetworkInterfacesRequest(
            region_id=REGION, network_interface_id=[eni]))
        return bool(e.body.eip_addresses.eip_address), bool(n.body.network_interface_sets.network_interface_set)

    assert seen() == (False, False)
    # older resources are listed as usual
    vpcs = sdk.describe_vpcs().body.vpcs.vpc
    assert [v.vpc_id for v in vpcs] == [flab.ids["vpcs"]["vpc-seed"]]
    while seen() != (True, True):
        assert time.monotonic() - t < 5, "the new resources never showed up"
        time.sleep(0.05)
    assert time.monotonic() - t >= 0.7


def test_storm_answers_service_unavailable_for_its_window(sdk: Sdk, flab: Lab) -> None:
    sdk.set_faults([{"kind": "storm", "actions": "*", "start_s": 0.6, "duration_s": 1.2}])
    started = flab.faults.started

    def zone(t: float) -> str:
        return "before" if t < 0.6 else "storm" if t < 1.8 else "after"

    seen: dict[str, set[str]] = {"before": set(), "storm": set(), "after": set()}
    while time.monotonic() - started < 2.3:
        t0 = time.monotonic() - started
        out = _outcome(sdk.describe_zones)
        t1 = time.monotonic() - started
        if zone(t0) == zone(t1):
            seen[zone(t0)].add(out)
        time.sleep(0.05)
    assert seen == {"before": {"ok"}, "storm": {"error:ServiceUnavailable:503"}, "after": {"ok"}}
    assert flab.faults.counts()["storm:DescribeZones"] >= 5
    # the admin actions are never caught in a storm: a storm can always be called off
    sdk.set_faults([{"kind": "storm", "actions": "*", "duration_s": 60}])
    assert _outcome(sdk.describe_zones) == "error:ServiceUnavailable:503"
    assert sdk.set_faults([])["Rules"] == 0
    assert _outcome(sdk.describe_zones) == "ok"


def test_rules_combine_and_get_faults_reports_them(sdk: Sdk) -> None:
    rules = [{"kind": "latency", "actions": "DescribeVpcs,DescribeZones", "min_ms": 1, "max_ms": 2},
             {"kind": "error", "actions": "DescribeZones", "rate": 1.0}]
    assert sdk.set_faults(rules, seed=1)["Rules"] == 2
    assert _outcome(sdk.describe_vpcs) == "ok"
    assert _outcome(sdk.describe_zones) == "error:ServiceUnavailable:503"
    got = sdk.get_faults()
    assert got["Rules"] == [{"kind": "latency", "actions": "DescribeVpcs,DescribeZones", "rate": 1.0, "min_ms": 1,
                             "max_ms": 2},
                            {"kind": "error", "actions": "DescribeZones", "rate": 1.0}]
    assert got["Fired"] == {"latency:DescribeVpcs": 1, "latency:DescribeZones": 1, "error:DescribeZones": 1}


# --- the fault plan's validation --------------------------------------------------------------------------

@pytest.mark.parametrize(("doc", "message"), [
    ([], "expected a mapping with a 'rules' list"),
    ({"rules": {"kind": "error"}}, "expected a mapping with a 'rules' list"),
    ({"rules": ["error"]}, "rules[0]: expected a mapping"),
    ({"rules": [{"kind": "explode"}]}, "rules[0].kind: 'explode' is not one of"),
    ({"rules": [{"kind": "error"}, {"kind": "error", "rate": 1.5}]}, "rules[1].rate: must be a number from 0 to 1"),
    ({"rules": [{"kind": "error", "rate": "often"}]}, "rules[0].rate"),
    ({"rules": [{"kind": "error", "actions": ""}]}, "rules[0].actions: must be a pattern string"),
    ({"rules": [{"kind": "error", "code": 503}]}, "rules[0].code: must be a string"),
    ({"rules": [{"kind": "sticky", "ops": "eni.attach"}]}, "rules[0].ops: must be a list"),
    ({"rules": [{"kind": "latency", "min_ms": -5}]}, "rules[0].min_ms: must be a number >= 0"),
])
def test_bad_fault_plans_are_refused_with_the_rule_named(doc: Any, message: str) -> None:
    with pytest.raises(FaultError) as e:
        parse_rules(doc, "f.yaml")
    assert str(e.value).startswith("f.yaml") and message in str(e.value)


def test_every_kind_parses() -> None:
    rules, seed = parse_rules({"seed": 9, "rules": [{"kind": k} for k in KINDS]})
    assert [r.kind for r in rules] == list(KINDS) and seed == 9
    assert parse_rules(None) == ([], None)


def test_set_faults_refuses_a_bad_plan_and_keeps_the_old_one(sdk: Sdk) -> None:
    sdk.set_faults([{"kind": "error", "actions": "DescribeZones"}])
    for bad in ("{not json", json.dumps({"rules": [{"kind": "explode"}]})):
        with pytest.raises(tea_exc.ClientException) as e:
            sdk.admin("SetFaults", Faults=bad)
        assert e.value.code == "InvalidParameter" and "Faults" in e.value.message
    assert _outcome(sdk.describe_zones) == "error:ServiceUnavailable:503"
    with pytest.raises(tea_exc.ClientException) as e:
        sdk.admin("SetFaults")
    assert e.value.code == "MissingParameter"


# --- the admin actions are authenticated like every request -------------------------------------------------

def _raw(lab: Lab, headers: dict[str, str], form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    body = urlencode(form).encode()
    conn = http.client.HTTPConnection(lab.server.host, lab.server.port, timeout=10)  # type: ignore[union-attr]
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                      **headers})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_admin_actions_refuse_unsigned_and_wrongly_signed_calls(flab: Lab) -> None:
    storm = json.dumps({"rules": [{"kind": "storm", "duration_s": 60}]})
    # unsigned, by header and by query-style parameters
    status, body = _raw(flab, {"x-acs-action": "SetFaults", "x-acs-version": "vpclab"}, {"Faults": storm})
    assert (status, body["Code"]) == (400, "IncompleteSignature")
    status, body = _raw(flab, {}, {"Action": "SetFaults", "Version": "vpclab", "Faults": storm})
    assert (status, body["Code"]) == (400, "IncompleteSignature")
    status, body = _raw(flab, {"x-acs-action": "GetFaults", "x-acs-version": "vpclab"}, {})
    assert (status, body["Code"]) == (400, "IncompleteSignature")
    # a forged Authorization header
    forged = {"x-acs-action": "SetFaults", "x-acs-version": "vpclab", "x-acs-date": "2026-01-01T00:00:00Z",
              "Authorization": f"ACS3-HMAC-SHA256 Credential={flab.access_key_id},SignedHeaders=host,"
                               f"Signature={'0' * 64}"}
    status, body = _raw(flab, forged, {"Faults": storm})
    assert status == 400 and body["Code"] in ("SignatureDoesNotMatch", "IncompleteSignature",
                                              "InvalidTimeStamp.Expired", "ContentSHA256NotMatch")
    # the wrong secret, and an unknown key
    with pytest.raises(tea_exc.ClientException) as e:
        Sdk(flab, secret="not-the-lab-secret").admin("SetFaults", Faults=storm)
    assert (e.value.code, e.value.status_code) == ("SignatureDoesNotMatch", 400)
    with pytest.raises(tea_exc.ClientException) as e:
        Sdk(flab, secret="not-the-lab-secret").admin("GetFaults")
    assert e.value.code == "SignatureDoesNotMatch"
    other = Sdk(flab)
    cfg = sdk_config(flab)
    cfg.access_key_id = "LTAI5tNoSuchKey00000000"
    other.ecs = EcsClient(cfg)
    with pytest.raises(tea_exc.ClientException) as e:
        other.admin("SetFaults", Faults=storm)
    assert (e.value.code, e.value.status_code) == ("InvalidAccessKeyId.NotFound", 404)
    # nothing of that changed the plan
    assert flab.faults.rules == [] and flab.faults.counts() == {}
    assert _outcome(Sdk(flab).describe_zones) == "ok"


def test_unknown_admin_action(sdk: Sdk) -> None:
    with pytest.raises(tea_exc.ClientException) as e:
        sdk.admin("DeleteEverything")
    assert (e.value.code, e.value.status_code) == ("InvalidAction.NotFound", 404)


# --- vpclab serve --faults FILE ---------------------------------------------------------------------------

def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vpclab", "serve", "--throttle", "off", "--dataplane", "off",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_with_a_faults_file(tmp_path: Path) -> None:
    f = tmp_path / "faults.yaml"
    f.write_text("seed: 1\nrules:\n  - {kind: error, actions: DescribeRegions, code: InternalError}\n"
                 "  - {kind: latency, actions: DescribeZones, min_ms: 200, max_ms: 250}\n")
    proc = _serve("--scenario", str(SEED), "--faults", str(f))
    try:
        ready = json.loads(proc.stdout.readline())  # type: ignore[union-attr]

        class _L:  # what sdk_config needs of a lab
            access_key_id = ready["access_key_id"]
            endpoint_hostport = ready["endpoint"].removeprefix("http://")

        ecs = EcsClient(sdk_config(_L()))  # type: ignore[arg-type]
        with pytest.raises(tea_exc.ServerException) as e:
            ecs.describe_regions(em.DescribeRegionsRequest())
        assert (e.value.code, e.value.status_code) == ("InternalError", 500)
        t = time.monotonic()
        ecs.describe_zones(em.DescribeZonesRequest(region_id=REGION))
        assert time.monotonic() - t >= 0.2
        ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.parametrize(("content", "message"), [
    ("rules:\n  - {kind: explode}\n", "rules[0].kind"),
    ("rules: [\n", "faults.yaml"),
    ("rules:\n  - {kind: error, rate: 2}\n", "rules[0].rate"),
])
def test_serve_refuses_a_bad_faults_file(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "faults.yaml"
    f.write_text(content)
    proc = _serve("--faults", str(f))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert out == "" and str(f) in err and message in err and "Traceback" not in err
    missing = _serve("--faults", str(tmp_path / "nope.yaml"))
    out, err = missing.communicate(timeout=60)
    assert missing.returncode == 2 and "nope.yaml" in err
