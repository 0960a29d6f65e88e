"""Wire compatibility: both signature schemes, the gateway's refusals, sync/async/v2 clients, throttling."""

from __future__ import annotations

import asyncio
import http.client
import json
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from alibabacloud_ecs20140526 import models as em
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import exceptions as tea_exc
from alibabacloud_tea_openapi import models as om
from alibabacloud_tea_openapi import utils_models as open_api_util_models
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_vpc20160428 import models as vm
from alibabacloud_vpc20160428.client import Client as VpcClient
from darabonba.runtime import RuntimeOptions

from vpclab import Lab

from .conftest import REGION, SEED, Clients, sdk_config


def _capture(lab: Lab) -> list[tuple[str, str, list[tuple[str, str]], bytes]]:
    """Keep every request the SDK sent (method, target, headers, body) as the server received it."""
    seen: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
    original = lab.api.handle

    def handle(method, target, headers, body):
        seen.append((method, target, list(headers), body))
        return original(method, target, headers, body)

    lab.api.handle = handle  # type: ignore[method-assign]
    return seen


def _send(lab: Lab, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(lab.server.host, lab.server.port, timeout=10)  # type: ignore[union-attr]
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            if k.lower() != "content-length":
                conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def _with_query(target: str, **changes: str) -> str:
    parts = urlsplit(target)
    q = dict(parse_qsl(parts.query, keep_blank_values=True))
    q.update(changes)
    return f"{parts.path}?{urlencode(q)}"


def _replace_header(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(k, value if k.lower() == name else v) for k, v in headers]


def test_sync_client_filters_by_json_array_and_tags(seed: Clients) -> None:
    r = seed.ecs.describe_instances(em.DescribeInstancesRequest(
        region_id=REGION, instance_ids=json.dumps([seed.lab.ids["instances"]["web-1"],
                                                    seed.lab.ids["instances"]["app-1"]]),
        tag=[em.DescribeInstancesRequestTag(key="app", value="web")]))
    assert [i.instance_name for i in r.body.instances.instance] == ["web-1"]
    assert r.headers["content-type"].startswith("application/json")


def test_v2_signed_client_works_and_is_verified(seed_lab: Lab) -> None:
    v2 = EcsClient(sdk_config(seed_lab, signature_algorithm="v2"))
    names = {i.instance_name for i in v2.describe_instances(em.DescribeInstancesRequest(
        region_id=REGION, page_size=100)).body.instances.instance}
    assert {"web-1", "app-1", "billing-1"} <= names
    bad = EcsClient(sdk_config(seed_lab, secret="wrong", signature_algorithm="v2"))
    with pytest.raises(tea_exc.ClientException) as e:
        bad.describe_regions(em.DescribeRegionsRequest())
    assert (e.value.code, e.value.status_code) == ("SignatureDoesNotMatch", 400)


def test_async_clients_work_concurrently(seed_lab: Lab) -> None:
    ecs = EcsClient(sdk_config(seed_lab))
    vpc = VpcClient(sdk_config(seed_lab))

    async def burst() -> list[int]:
        calls = [ecs.describe_instances_async(em.DescribeInstancesRequest(region_id=REGION)) for _ in range(25)]
        calls += [vpc.describe_eip_addresses_async(vm.DescribeEipAddressesRequest(region_id=REGION))
                  for _ in range(25)]
        return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(burst()) == [200] * 50


def test_wrong_secret_and_unknown_key_are_refused(lab: Lab) -> None:
    with pytest.raises(tea_exc.ClientException) as e:
        EcsClient(sdk_config(lab, secret="not-the-secret")).describe_regions(em.DescribeRegionsRequest())
    assert (e.value.code, e.value.status_code) == ("SignatureDoesNotMatch", 400)
    cfg = sdk_config(lab)
    cfg.access_key_id = "LTAI5tNoSuchKey00000000"
    with pytest.raises(tea_exc.ClientException) as e:
        EcsClient(cfg).describe_regions(em.DescribeRegionsRequest())
    assert (e.value.code, e.value.status_code) == ("InvalidAccessKeyId.NotFound", 404)


def test_stale_timestamp_is_refused(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: "2020-01-01T00:00:00Z"))
    for algo in (None, "v2"):
        kw = {"signature_algorithm": algo} if algo else {}
        with pytest.raises(tea_exc.ClientException) as e:
            EcsClient(sdk_config(lab, **kw)).describe_regions(em.DescribeRegionsRequest())
        assert (e.value.code, e.value.status_code) == ("InvalidTimeStamp.Expired", 400)


def test_tampered_requests_are_refused(seed_lab: Lab) -> None:
    seen = _capture(seed_lab)
    EcsClient(sdk_config(seed_lab)).describe_instances(em.DescribeInstancesRequest(
        region_id=REGION, instance_ids=json.dumps([seed_lab.ids["instances"]["web-1"]])))
    method, target, headers, body = seen[-1]
    # the genuine request, replayed: its nonce was already used
    assert _send(seed_lab, method, target, headers, body)[1]["Code"] == "SignatureNonceUsed"
    fresh = _replace_header(headers, "x-acs-signature-nonce", "0" * 32)
    cases = {
        "query value changed": (method, _with_query(target, RegionId="cn-shanghai"), fresh, body),
        "action changed": (method, target, _replace_header(fresh, "x-acs-action", "DeleteInstance"), body),
        "method changed": ("GET", target, fresh, body),
        "signature flipped": (method, target, [(k, v[:-1] + ("0" if v[-1] != "0" else "1"))
                                               if k.lower() == "authorization" else (k, v) for k, v in fresh], body),
    }
    for name, (m, t, h, b) in cases.items():
        status, payload = _send(seed_lab, m, t, h, b)
        assert (status, payload["Code"]) == (400, "SignatureDoesNotMatch"), name
        assert set(payload) >= {"RequestId", "HostId", "Code", "Message"}
    status, payload = _send(seed_lab, method, target, fresh, b"InstanceIds=x")
    assert status == 400 and payload["Code"] in ("ContentSHA256NotMatch", "IncompleteSignature")
    unsigned = [(k, v) for k, v in fresh if k.lower() != "authorization"]
    status, payload = _send(seed_lab, method, target, unsigned, body)
    assert (status, payload["Code"]) == (400, "IncompleteSignature")


def test_tampered_and_unsigned_changes_are_refused_and_change_nothing() -> None:
    """The same for a request that would change something (UnassociateEipAddress): the genuine one is held
    back by a fault (503, not applied), then its tampered, replayed and unsigned variants are sent."""
    import secrets

    from vpclab import errors
    from vpclab.resources.eips import Eip
    from vpclab.server import FaultDecision

    def refuse_first(action: str, akid: str, region: str) -> FaultDecision | None:
        if action == "UnassociateEipAddress" and not held:
            return FaultDecision(errors.service_unavailable())
        return None

    def state(lab: Lab) -> dict:
        with lab.world.lock:
            return {k: {i: o.to_dict() for i, o in t.items()} for k, t in lab.world.tables.items() if t}

    held: list[tuple[str, str, list[tuple[str, str]], bytes]] = []
    with Lab(SEED, faults=refuse_first) as lab:
        seen = _capture(lab)
        web2 = lab.ids["instances"]["web-2"]
        with lab.world.lock:
            alloc = next(e.id for e in lab.world.all(Eip) if e.ip == "203.0.113.12")
        with pytest.raises(tea_exc.AlibabaCloudException) as e:
            VpcClient(sdk_config(lab)).unassociate_eip_address_with_options(
                vm.UnassociateEipAddressRequest(region_id=REGION, allocation_id=alloc, instance_id=web2),
                RuntimeOptions(autoretry=False))
        assert e.value.code == "ServiceUnavailable"
        held.append(seen[-1])
        method, target, headers, body = held[0]
        before = state(lab)

        def nonce(h: list[tuple[str, str]]) -> list[tuple[str, str]]:
            return _replace_header(h, "x-acs-signature-nonce", secrets.token_hex(16))

        cases = {
            "replayed with a new nonce": (method, target, nonce(headers), body, "SignatureDoesNotMatch"),
            "another instance": (method, _with_query(target, InstanceId=lab.ids["instances"]["web-1"]),
                                 nonce(headers), body, "SignatureDoesNotMatch"),
            "another action": (method, target, _replace_header(nonce(headers), "x-acs-action", "ReleaseEipAddress"),
                               body, "SignatureDoesNotMatch"),
            "unsigned": (method, target, [(k, v) for k, v in nonce(headers) if k.lower() != "authorization"], body,
                         "IncompleteSignature"),
            "replayed as it was": (method, target, headers, body, "SignatureNonceUsed"),
        }
        for name, (m, t, h, b, code) in cases.items():
            status, payload = _send(lab, m, t, h, b)
            assert (status, payload["Code"]) == (400, code), (name, payload)
        assert state(lab) == before, "a refused request changed the lab"
        with lab.world.lock:
            assert lab.world.get(Eip, alloc).status == "InUse"

def _call(client: EcsClient, action: str, version: str) -> dict:
    params = open_api_util_models.Params(action=action, version=version, protocol="HTTP", pathname="/",
                                         method="POST", auth_type="AK", style="RPC", req_body_type="formData",
                                         body_type="json")
    req = open_api_util_models.OpenApiRequest(query={"RegionId": REGION})
    return client.call_api(params, req, RuntimeOptions())


def test_unknown_action_and_version(lab: Lab) -> None:
    client = EcsClient(sdk_config(lab))
    with pytest.raises(tea_exc.ClientException) as e:
        _call(client, "DescribeUnicorns", "2014-05-26")
    assert (e.value.code, e.value.status_code) == ("InvalidAction.NotFound", 404)
    with pytest.raises(tea_exc.ClientException) as e:
        _call(client, "DescribeInstances", "2099-01-01")
    assert (e.value.code, e.value.status_code) == ("InvalidVersion", 400)
    # an action of the other service under this version is unknown too
    with pytest.raises(tea_exc.ClientException) as e:
        _call(client, "DescribeEipAddresses", "2014-05-26")
    assert e.value.code == "InvalidAction.NotFound"
    assert _call(client, "DescribeEipAddresses", "2016-04-28")["statusCode"] == 200


def test_throttling_answers_with_retry_after(tmp_path) -> None:
    profile = tmp_path / "limits.yaml"
    profile.write_text("window_s: 60\nlimits:\n  DescribeRegions: 2\n  '*': 1000\n")
    with Lab(throttle=str(profile)) as lab:
        ecs = EcsClient(sdk_config(lab))
        ecs.describe_regions(em.DescribeRegionsRequest())
        ecs.describe_regions(em.DescribeRegionsRequest())
        with pytest.raises(tea_exc.ThrottlingException) as e:
            ecs.describe_regions(em.DescribeRegionsRequest())
        assert e.value.code == "Throttling.User" and e.value.status_code == 400
        assert 0 < e.value.retry_after <= 60_000
        # counted per action: another action is not throttled
        ecs.describe_zones(em.DescribeZonesRequest(region_id=REGION))
        # and per access key: a second key has its own budget
        with Lab(throttle=str(profile), extra_keys={"LTAI5tSecondKey000000001": "second-secret"}) as lab2:
            first = EcsClient(sdk_config(lab2))
            cfg = sdk_config(lab2, secret="second-secret")
            cfg.access_key_id = "LTAI5tSecondKey000000001"
            second = EcsClient(cfg)
            for _ in range(2):
                first.describe_regions(em.DescribeRegionsRequest())
            second.describe_regions(em.DescribeRegionsRequest())


def test_error_body_has_the_gateway_shape(lab: Lab) -> None:
    with pytest.raises(tea_exc.ClientException) as e:
        EcsClient(sdk_config(lab)).describe_zones(em.DescribeZonesRequest(region_id="mars-north-1"))
    assert (e.value.code, e.value.status_code) == ("InvalidRegionId.NotFound", 404)
    assert e.value.request_id and e.value.data["HostId"]


def test_boolean_and_unicode_values_survive_signing(lab: Lab) -> None:
    ecs = EcsClient(sdk_config(lab))
    r = ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, dry_run=False,
                                                           instance_name="测试 *name* a+b&c=d%20e/ü~*'()!"))
    assert r.body.instances.instance == []
    with pytest.raises(tea_exc.ClientException) as e:
        ecs.describe_instances(em.DescribeInstancesRequest(region_id=REGION, dry_run=True))
    assert e.value.code == "DryRunOperation"


def test_an_sts_token_client_is_accepted(lab: Lab) -> None:
    cfg = sdk_config(lab)
    cfg.security_token = "CAIS-lab-sts-token=="
    assert EcsClient(cfg).describe_regions(em.DescribeRegionsRequest()).status_code == 200


def test_seed_and_clients_fixture(seed: Clients) -> None:
    assert seed.lab.ids["instances"]["web-1"].startswith("i-bp")
    assert str(SEED).endswith("seed.yaml")
    assert isinstance(om.Config(), om.Config)
