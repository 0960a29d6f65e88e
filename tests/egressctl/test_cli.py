"""The ``egressctl`` command line as a real subprocess against ``vpclab serve`` (also a subprocess),
with credentials only in environment variables and a distinctive secret configured in the lab.

Besides each command's own contract (output schema, exit codes 0/1/2, nothing changed on refusal),
every test checks that the secret never appears in any stdout/stderr, nor in any byte of any file
under the test's directory (plan, journal, lock, guest scripts, HOME).
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from egressctl import plan as plan_mod
from vpclab import Lab

from .conftest import REGION, SEED

SECRET = "EgcTestSecret-" + secrets.token_hex(16)  # never a substring of anything else by accident
KEY_ID = "LTAI5tCliTest" + secrets.token_hex(6)
WRONG_SECRET = "EgcWrongSecret-" + secrets.token_hex(16)

_EXE = Path(sys.executable).with_name("egressctl")
EGRESSCTL = [str(_EXE)] if _EXE.exists() else [sys.executable, "-c", "from egressctl.cli import main; main()"]

AUDIT_KEYS = {"instance_id", "name", "vpc_id", "vswitch_id", "private_ip", "egress_now", "egress_after", "inbound_ip",
              "action", "reasons"}


def _clean_env() -> dict[str, str]:
    """The test runner's environment without anything that could pick credentials, a region, an
    endpoint or a proxy for the CLI (the SDK honours HTTP_PROXY even for 127.0.0.1)."""
    drop = ("ALIBABA_CLOUD_", "ALICLOUD_", "EGRESSCTL_", "VPCLAB_")
    return {k: v for k, v in os.environ.items()
            if not k.startswith(drop) and "proxy" not in k.lower()}


def _forms(secret: str) -> list[bytes]:
    """The secret as it could end up in a file or an output: raw, URL-quoted, JSON-escaped."""
    import base64

    raw = secret.encode()
    return [raw, quote(secret, safe="").encode(), json.dumps(secret).encode()[1:-1], base64.b64encode(raw)]


class Cli:
    """Runs egressctl as a subprocess and remembers every byte it printed."""

    def __init__(self, tmp_path: Path, endpoint: str, secret: str = SECRET, key_id: str = KEY_ID):
        self.tmp = tmp_path
        self.endpoint = endpoint
        self.secret, self.key_id = secret, key_id
        self.home = tmp_path / "home"
        self.home.mkdir(exist_ok=True)
        self.outputs: list[bytes] = []

    def env(self, secret: str | None = None, key_id: str | None = None) -> dict[str, str]:
        return {**_clean_env(), "HOME": str(self.home), "NO_PROXY": "127.0.0.1,localhost",
                "ALIBABA_CLOUD_ACCESS_KEY_ID": key_id or self.key_id,
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret or self.secret,
                "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}

    def __call__(self, *args: str, region: str | None = REGION, endpoint: str | None = "default",
                 secret: str | None = None, key_id: str | None = None, timeout: float = 120
                 ) -> subprocess.CompletedProcess[str]:
        glob: list[str] = []
        if region:
            glob += ["--region", region]
        if endpoint:
            glob += ["--endpoint", self.endpoint if endpoint == "default" else endpoint]
        proc = subprocess.run([*EGRESSCTL, *glob, *args], cwd=self.tmp, env=self.env(secret, key_id),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        self.outputs += [proc.stdout, proc.stderr]
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def assert_no_secret(self, *secrets_: str) -> None:
        for s in secrets_ or (self.secret,):
            for form in _forms(s):
                for i, out in enumerate(self.outputs):
                    assert form not in out, f"the secret leaked into output #{i}"
                for path in self.tmp.rglob("*"):
                    if path.is_file():
                        assert form not in path.read_bytes(), f"the secret leaked into {path}"


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


@functools.cache
def _no_dataplane() -> list[str]:
    """``--dataplane off`` where the lab has a data plane (as root it would start one, with a real guest
    executor): these tests are about the control plane and a lab without an executor."""
    h = subprocess.run([sys.executable, "-m", "vpclab", "serve", "--help"], capture_output=True, text=True,
                       timeout=60, env={**_clean_env(), "COLUMNS": "200"})
    return ["--dataplane", "off"] if "--dataplane" in h.stdout else []


@contextmanager
def serve(*args: str) -> Iterator[dict[str, Any]]:
    env = {**_clean_env(), "VPCLAB_ACCESS_KEY_ID": KEY_ID, "VPCLAB_ACCESS_KEY_SECRET": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "vpclab", "serve", "--throttle", "off", *_no_dataplane(), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise AssertionError(f"vpclab serve printed nothing; stderr: {proc.stderr.read()}")  # type: ignore[union-attr]
        ready = json.loads(line)
        assert ready["access_key_id"] == KEY_ID and SECRET not in line
        yield ready
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def lab_ready() -> Iterator[dict[str, Any]]:
    """A lab of its own, for a test that changes the cloud."""
    with serve("--scenario", str(SEED)) as ready:
        yield ready


@pytest.fixture(scope="module")
def shared_lab() -> Iterator[dict[str, Any]]:
    """One lab for the tests that must not change anything (each asserts that it did not)."""
    with serve("--scenario", str(SEED)) as ready:
        yield ready


@pytest.fixture
def cli(tmp_path: Path, shared_lab: dict[str, Any]) -> Iterator[Cli]:
    c = Cli(tmp_path, shared_lab["endpoint"])
    yield c
    c.assert_no_secret()


@pytest.fixture
def fresh_cli(tmp_path: Path, lab_ready: dict[str, Any]) -> Iterator[Cli]:
    c = Cli(tmp_path, lab_ready["endpoint"])
    yield c
    c.assert_no_secret()


def audit_rows(cli: Cli) -> dict[str, dict[str, Any]]:
    p = cli("audit", "--output", "json")
    assert p.returncode == 0, p.stderr
    return {r["name"]: r for r in json.loads(p.stdout)["instances"]}


def ids_by_name(cli: Cli) -> dict[str, str]:
    return {n: r["instance_id"] for n, r in audit_rows(cli).items()}


def make_plan(cli: Cli, *args: str, name: str = "plan.json") -> Path:
    path = cli.tmp / name
    p = cli("plan", *args, "-o", str(path), "--output", "json")
    assert p.returncode == 0, p.stderr
    return path


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- read-only commands ----------------------------------------------------------------------------

def test_audit_json_schema(cli: Cli) -> None:
    p = cli("audit", "--output", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["region"] == REGION
    rows = doc["instances"]
    assert len(rows) == 7
    for r in rows:
        assert set(r) >= AUDIT_KEYS, AUDIT_KEYS - set(r)
        for k in ("egress_now", "egress_after"):
            assert {"kind", "ip"} <= set(r[k]) and r[k]["kind"] in ("fixed_ip", "eip", "snat", "none")
        assert r["action"] in ("ok", "migrate", "blocked", "skip")
        assert isinstance(r["reasons"], list) and all({"code", "message"} <= set(x) for x in r["reasons"])
        assert r["instance_id"].startswith("i-") and r["vpc_id"].startswith("vpc-") and \
            r["vswitch_id"].startswith("vsw-")
    by = {r["name"]: r for r in rows}
    assert by["web-1"]["egress_now"] == {"kind": "fixed_ip", "ip": "203.0.113.10", "via": None}
    assert by["web-1"]["egress_after"]["kind"] == "snat" and by["web-1"]["egress_after"]["ip"] == "203.0.113.100"
    assert by["web-1"]["inbound_ip"] == "203.0.113.10" and by["web-1"]["private_ip"] == "192.168.3.10"
    assert by["app-1"]["action"] == "ok" and by["app-1"]["inbound_ip"] is None
    assert [x["code"] for x in by["win-1"]["reasons"]] == ["not_linux"]
    # the table is for people: every instance id is in it
    t = cli("audit")
    assert t.returncode == 0 and all(r["instance_id"] in t.stdout for r in rows)


def test_iam_policy_is_json_without_release(cli: Cli) -> None:
    p = cli("iam-policy", region=None, endpoint=None)
    assert p.returncode == 0, p.stderr
    policy = json.loads(p.stdout)
    actions = [a for st in policy["Statement"] for a in (st["Action"] if isinstance(st["Action"], list)
                                                            else [st["Action"]])]
    assert "ReleaseEipAddress" not in p.stdout and not any(a.endswith(":ReleaseEipAddress") for a in actions)
    for needed in ("ecs:ConvertNatPublicIpToEip", "ecs:CreateNetworkInterface", "ecs:AttachNetworkInterface",
                   "vpc:UnassociateEipAddress", "vpc:AssociateEipAddress", "ecs:RunCommand",
                   "ecs:DescribeInstances"):
        assert needed in actions, needed


def test_guest_script(cli: Cli) -> None:
    args = ["guest-script", "--mac", "00:16:3E:AA:BB:CC", "--ip", "192.168.3.99", "--prefix", "24",
            "--gateway", "192.168.3.253"]
    p = cli(*args, region=None, endpoint=None)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("#!/bin/sh") and "00:16:3e:aa:bb:cc" in p.stdout and "192.168.3.99" in p.stdout
    assert "EGRESSCTL_MODE=apply" in p.stdout
    rm = cli(*args, "--mode", "remove", region=None, endpoint=None)
    assert rm.returncode == 0 and "EGRESSCTL_MODE=remove" in rm.stdout
    # the script is POSIX sh: it parses
    sh = subprocess.run(["sh", "-n"], input=p.stdout, text=True, capture_output=True)
    assert sh.returncode == 0, sh.stderr

    bad = cli("guest-script", "--mac", "00:16:3e:aa:bb", "--ip", "192.168.3.99", "--prefix", "24",
              "--gateway", "192.168.3.253", region=None, endpoint=None)
    assert bad.returncode == 2 and bad.stdout == ""
    assert "mac" in bad.stderr.lower()
    inj = cli("guest-script", "--mac", "00:16:3e:aa:bb:cc;reboot", "--ip", "192.168.3.99", "--prefix", "24",
              "--gateway", "192.168.3.253", region=None, endpoint=None)
    assert inj.returncode == 2 and "reboot" not in inj.stdout
    mode = cli(*args, "--mode", "destroy", region=None, endpoint=None)
    assert mode.returncode == 2 and "--mode" in mode.stderr


# --- plan, apply, status, verify -------------------------------------------------------------------

def test_plan_apply_status_verify(fresh_cli: Cli) -> None:
    cli = fresh_cli
    # the lab serve has no guest executor: the guest step is printed and confirmed by the operator
    path = cli.tmp / "plan.json"
    p = cli("plan", "--all", "--allow-billing-change", "--allow-stop", "--guest", "print", "-o", str(path),
            "--output", "json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    plan = plan_mod.load(path)
    assert summary["plan_id"] == plan.plan_id and summary["plan"] == str(path)
    names = {i.name for i in plan.instances}
    # with --guest print, the Windows guest is not blocked (the operator runs the script)
    assert names == {"web-1", "web-2", "billing-1", "small-1", "win-1"}
    assert sorted(summary["instances"]) == sorted(i.instance_id for i in plan.instances)
    assert {e["name"]: e["action"] for e in summary["excluded"]} == {"app-1": "ok", "app-2": "ok"}
    ids = ",".join(i.instance_id for i in plan.instances)

    before = audit_rows(cli)
    a = cli("apply", str(path), "--yes", "--output", "json", "--guest-done", ids, "--poll-interval", "0.05")
    lines = json_lines(a.stdout)
    assert lines and all("event" in e for e in lines)
    last = lines[-1]
    assert last["event"] == "summary" and last["exit_code"] == 0, (last, a.stderr)
    assert a.returncode == 0
    assert sorted(last["done"]) == sorted(ids.split(",")) and not last["failed"] and not last["not_started"]
    done_events = {e["instance_id"] for e in lines if e["event"] == "instance_done"}
    assert done_events == set(ids.split(","))

    after = audit_rows(cli)
    for name in names:
        assert after[name]["egress_now"]["kind"] == "snat"
        assert after[name]["inbound_ip"] == before[name]["inbound_ip"]  # the same public address, now on the ENI
        assert after[name]["action"] == "ok"

    st = cli("status", str(path), "--output", "json", region=None, endpoint=None)
    assert st.returncode == 0, st.stderr
    doc = json.loads(st.stdout)
    assert doc["plan_id"] == plan.plan_id
    assert {r["name"]: r["status"] for r in doc["instances"]} == dict.fromkeys(names, "done")
    for r in doc["instances"]:
        assert r["eni_id"].startswith("eni-") and r["allocation_id"].startswith("eip-")
        assert r["steps_done"] == r["steps"]

    # egress is probed through Cloud Assistant; a `vpclab serve` has no executor, so the probe fails
    v = cli("verify", str(path), "--skip", "inbound", "--guest", "cloud-assistant", "--timeout", "30",
            "--output", "json")
    assert v.returncode == 1, v.stderr
    vd = json.loads(v.stdout)
    assert vd["ok"] is False and len(vd["instances"]) == len(names)
    for r in vd["instances"]:
        assert r["checks"]["control"]["ok"] is True
        assert r["checks"]["egress"]["ok"] is False
        detail = r["checks"]["egress"]["detail"]
        if r["name"] == "win-1":  # the probe is a shell script: Cloud Assistant refuses it on Windows
            assert "CommandNotApplicable" in detail
        else:
            assert "no command executor" in detail, detail
        assert "inbound" not in r["checks"]
    # the control-plane check alone passes
    v2 = cli("verify", str(path), "--skip", "egress,inbound", "--output", "json")
    assert v2.returncode == 0, v2.stderr
    assert json.loads(v2.stdout)["ok"] is True

    # apply again: nothing to do, still exit 0
    again = cli("apply", str(path), "--yes", "--output", "json")
    assert again.returncode == 0 and json_lines(again.stdout)[-1]["exit_code"] == 0
    assert audit_rows(cli) == after


def test_apply_fails_cleanly_when_the_guest_step_cannot_run(fresh_cli: Cli) -> None:
    cli = fresh_cli
    ids = ids_by_name(cli)
    path = make_plan(cli, "--instances", ids["web-1"])  # Cloud Assistant, but the lab has no executor
    a = cli("apply", str(path), "--yes", "--output", "json", "--poll-interval", "0.05")
    assert a.returncode == 1
    last = json_lines(a.stdout)[-1]
    assert last["event"] == "summary" and last["exit_code"] == 1
    assert list(last["failed"]) == [ids["web-1"]]
    assert "guest" in last["failed"][ids["web-1"]]
    # failed before the cut-over: the address is still on the instance (now as an EIP), inbound intact
    row = audit_rows(cli)["web-1"]
    assert row["egress_now"] == {"kind": "eip", "ip": "203.0.113.10", "via": row["egress_now"]["via"]}
    st = json.loads(cli("status", str(path), "--output", "json", region=None, endpoint=None).stdout)
    assert st["instances"][0]["status"] == "failed" and st["instances"][0]["step"] == "guest"


# --- exit code 2: usage and refusals, nothing changed ----------------------------------------------

def test_no_region_and_bad_endpoint(cli: Cli) -> None:
    p = cli("audit", region=None)
    assert p.returncode == 2 and "no region" in p.stderr
    for bad in ("ftp://127.0.0.1:1", "127.0.0.1:8080", "http://", "http://127.0.0.1:1/some/path"):
        b = cli("audit", endpoint=bad)
        assert b.returncode == 2, (bad, b.stderr)
        assert "endpoint" in b.stderr and b.stdout == ""


def test_plan_needs_a_selection_and_writes_nothing_on_refusal(cli: Cli) -> None:
    ids = ids_by_name(cli)
    out = cli.tmp / "p.json"
    p = cli("plan", "-o", str(out))
    assert p.returncode == 2 and "--instances" in p.stderr and "--all" in p.stderr
    both = cli("plan", "--all", "--instances", ids["web-1"], "-o", str(out))
    assert both.returncode == 2
    blocked = cli("plan", "--instances", ids["win-1"], "-o", str(out))
    assert blocked.returncode == 2 and ids["win-1"] in blocked.stderr and "Linux" in flat(blocked.stderr)
    assert not out.exists()
    assert not list(cli.tmp.glob("*.json*"))


@pytest.fixture(scope="module")
def base_plan(shared_lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """A plan for web-1 and web-2 of the shared lab (made once), and the audit it was made against."""
    c = Cli(tmp_path_factory.mktemp("base"), shared_lab["endpoint"])
    ids = ids_by_name(c)
    path = make_plan(c, "--instances", f"{ids['web-1']},{ids['web-2']}")
    yield path.read_bytes(), audit_rows(c)
    c.assert_no_secret()


@pytest.fixture
def planned(cli: Cli, base_plan: tuple[bytes, dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    path = cli.tmp / "plan.json"
    path.write_bytes(base_plan[0])
    return path, base_plan[1]


def _refused_apply(cli: Cli, path: Path, before: dict[str, Any], *args: str, region: str | None = REGION,
                   ) -> str:
    p = cli("apply", str(path), "--yes", "--output", "json", *args, region=region)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stdout == ""
    assert not path.with_name(path.name + ".journal").exists()
    assert audit_rows(cli) == before, "a refused apply changed the cloud"
    return flat(p.stderr)


def test_truncated_plan(cli: Cli, planned: tuple[Path, dict[str, Any]]) -> None:
    path, before = planned
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    msg = _refused_apply(cli, path, before)
    assert str(path) in msg and "truncated" in msg


def test_hand_edited_plan(cli: Cli, planned: tuple[Path, dict[str, Any]]) -> None:
    path, before = planned
    data = json.loads(path.read_text())
    data["instances"][0]["public_ip"] = "198.51.100.77"
    path.write_text(json.dumps(data, indent=2))
    msg = _refused_apply(cli, path, before)
    assert "checksum" in msg and "edited" in msg


def test_plan_that_is_not_json(cli: Cli, planned: tuple[Path, dict[str, Any]]) -> None:
    path, before = planned
    path.write_text("plan: [this is YAML, not JSON\n")
    msg = _refused_apply(cli, path, before)
    assert str(path) in msg and "not a plan" in msg and "invalid JSON" in msg
    other = cli.tmp / "other.json"
    other.write_text('{"format": "something-else"}')
    assert "not an egressctl plan" in _refused_apply(cli, other, before)
    missing = cli.tmp / "missing.json"
    p = cli("apply", str(missing), "--yes")
    assert p.returncode == 2 and "cannot read" in flat(p.stderr)


def test_plan_that_is_binary_garbage(cli: Cli, planned: tuple[Path, dict[str, Any]]) -> None:
    path, before = planned
    path.write_bytes(b"\x00\x01 this is not a plan \xff\xfe")
    msg = _refused_apply(cli, path, before)
    assert str(path) in msg and "not a plan" in msg


def test_plan_for_another_account(cli: Cli, planned: tuple[Path, dict[str, Any]]) -> None:
    path, before = planned
    p = plan_mod.load(path)
    foreign = p.model_copy(update={"account_id": "9999999999999999"}).sealed()
    other = cli.tmp / "foreign.json"
    plan_mod.save(foreign, other)
    assert plan_mod.load(other).account_id == "9999999999999999"  # a valid, sealed plan
    msg = _refused_apply(cli, other, before)
    assert "9999999999999999" in msg and "1234567890123456" in msg and "account" in msg
    rb = cli("rollback", str(other), "--yes")
    assert rb.returncode == 2 and "account" in flat(rb.stderr)


def test_plan_for_another_region(cli: Cli, planned: tuple[Path, dict[str, Any]]) -> None:
    path, before = planned
    msg = _refused_apply(cli, path, before, region="cn-shanghai")
    assert "cn-hangzhou" in msg and "cn-shanghai" in msg and "region" in msg


def test_apply_without_yes_when_stdin_is_not_a_tty(cli: Cli, planned: tuple[Path, dict[str, Any]]) -> None:
    path, before = planned
    p = cli("apply", str(path), "--output", "json")
    assert p.returncode == 2 and "--yes" in flat(p.stderr)
    assert not path.with_name(path.name + ".journal").exists()
    assert audit_rows(cli) == before
    rb = cli("rollback", str(path))
    assert rb.returncode == 2 and "--yes" in flat(rb.stderr)


# --- credentials ------------------------------------------------------------------------------------

@pytest.fixture
def counted_lab() -> Iterator[tuple[Lab, list[str]]]:
    """The lab in-process (so its requests can be counted), with the same distinctive key pair."""
    with Lab(SEED, access_key_id=KEY_ID, access_key_secret=SECRET) as lab:
        seen: list[str] = []
        lock = threading.Lock()
        orig = lab.api.handle

        def counting(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Any:
            action = next((v for k, v in headers if k.lower() == "x-acs-action"), target)
            with lock:
                seen.append(action)
            return orig(method, target, headers, body)

        lab.api.handle = counting  # type: ignore[method-assign]
        yield lab, seen


@pytest.mark.parametrize("command", [["audit", "--output", "json"], ["plan", "--all", "-o", "p.json"]])
def test_wrong_secret_exits_2_without_a_retry_storm(tmp_path: Path, counted_lab: tuple[Lab, list[str]],
                                                    command: list[str]) -> None:
    lab, seen = counted_lab
    cli = Cli(tmp_path, lab.endpoint)
    p = cli(*command, secret=WRONG_SECRET)
    assert p.returncode == 2, (p.stdout, p.stderr)
    msg = flat(p.stderr)
    assert "credentials" in msg and "nothing was changed" in msg and "SignatureDoesNotMatch" in msg
    assert p.stdout == ""
    assert 1 <= len(seen) <= 2, seen  # refused once, never retried
    assert not (tmp_path / "p.json").exists()
    # unknown key id: same story
    n = len(seen)
    q = cli(*command, key_id="LTAI5tNoSuchKey0000000001", secret=WRONG_SECRET)
    assert q.returncode == 2 and "credentials" in flat(q.stderr)
    assert 1 <= len(seen) - n <= 2, seen[n:]
    cli.assert_no_secret(SECRET, WRONG_SECRET)


def test_no_credentials_at_all_exits_2_at_once(tmp_path: Path, counted_lab: tuple[Lab, list[str]]) -> None:
    lab, seen = counted_lab
    cli = Cli(tmp_path, lab.endpoint)
    env = {k: v for k, v in cli.env().items() if not k.startswith("ALIBABA_CLOUD_ACCESS_KEY")}
    p = subprocess.run([*EGRESSCTL, "--region", REGION, "--endpoint", lab.endpoint, "audit"], cwd=tmp_path, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "no usable credentials" in flat(p.stderr)
    assert seen == []


def test_unknown_profile_exits_2_at_once(tmp_path: Path, counted_lab: tuple[Lab, list[str]]) -> None:
    lab, seen = counted_lab
    cli = Cli(tmp_path, lab.endpoint)
    try:
        p = cli("--profile", "nosuchprofile", "audit", timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("egressctl kept retrying a missing credentials profile for more than 5 s")
    assert p.returncode == 2 and "credentials" in flat(p.stderr)
    assert seen == []


def test_right_secret_through_the_counted_lab(tmp_path: Path, counted_lab: tuple[Lab, list[str]]) -> None:
    """Audit is batched: a constant number of requests for the whole region."""
    lab, seen = counted_lab
    cli = Cli(tmp_path, lab.endpoint)
    p = cli("audit", "--output", "json")
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["instances"]) == 7
    assert len(seen) <= 20, seen
    cli.assert_no_secret(SECRET)


def test_secret_never_appears_anywhere(fresh_cli: Cli) -> None:
    """A tour of every command that touches the cloud or writes a file, then every byte is searched."""
    cli = fresh_cli
    ids = ids_by_name(cli)
    cli("audit")
    path = make_plan(cli, "--instances", ids["web-1"], "--guest", "print")
    cli("plan", "--instances", ids["web-1"], "--guest", "print", "-o", str(cli.tmp / "p2.json"))
    a = cli("apply", str(path), "--yes", "--poll-interval", "0.05")  # waits at the printed guest step
    assert a.returncode == 1 and "paused" in a.stdout
    assert list(path.with_name(path.name + ".guest").iterdir()), "the printed guest script"
    a2 = cli("apply", str(path), "--yes", "--guest-done", ids["web-1"], "--poll-interval", "0.05")
    assert a2.returncode == 0, a2.stderr
    cli("status", str(path), region=None, endpoint=None)
    cli("verify", str(path), "--skip", "inbound,egress")
    rb = cli("rollback", str(path), "--yes", "--guest-done", ids["web-1"], "--poll-interval", "0.05")
    assert rb.returncode == 0, rb.stderr
    cli("audit", secret=WRONG_SECRET)
    written = sorted(p.name for p in cli.tmp.iterdir())
    assert {"plan.json", "plan.json.journal", "plan.json.lock", "plan.json.guest", "p2.json"} <= set(written)
    cli.assert_no_secret(SECRET, WRONG_SECRET)
