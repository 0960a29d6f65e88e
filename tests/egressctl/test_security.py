"""Security and refusals (issue 6, DESIGN §5):

* the secret appears in no output, log, plan, journal, report or guest script of a whole CLI session
  (audit, plan, apply that fails, apply killed and resumed, status, verify, rollback, refusals, profiles),
  searched raw, URL-quoted, JSON-escaped, and inside every base64 (and gzip) blob of every byte produced;
* names, tags and descriptions full of shell metacharacters never reach a shell: not in any script a guest
  received or an operator is given, and no marker file appears (also on the real data plane, as root);
* the lab cleans only its own namespaces;
* refusals are clear and cheap: a ServiceUnavailable storm during `plan` writes no plan, wrong credentials
  at apply/rollback change nothing and are not retried, credentials revoked mid-run stop every instance
  at once.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from egressctl import plan as plan_mod
from egressctl import workflows
from egressctl.preflight import Options
from vpclab import Lab
from vpclab.faults import Faults, parse_rules
from vpclab.resources.enis import Eni

from .conftest import REGION, SEED, FakeGuest, cloud_for

# characters that URL-quoting and JSON escape differently, so that each searched form is its own string
SECRET = "EgcSec/Audit+" + secrets.token_hex(16) + '="q\\'

KEY_ID = "LTAI5tSecAudit" + secrets.token_hex(5)
WRONG = "EgcSecWrong-" + secrets.token_hex(16)
ROOT = Path(__file__).resolve().parents[2]


def snapshot(lab: Lab) -> dict[str, dict[str, dict[str, Any]]]:
    with lab.world.lock:
        return {kind: {rid: obj.to_dict() for rid, obj in table.items()}
                for kind, table in lab.world.tables.items() if table}


class Cli:
    """egressctl as a subprocess with credentials in the environment only; keeps every byte it printed."""

    def __init__(self, lab: Lab, tmp: Path, key_id: str = KEY_ID, secret: str = SECRET):
        self.lab, self.tmp, self.key_id, self.secret = lab, tmp, key_id, secret
        self.home = tmp / "home"
        self.home.mkdir(exist_ok=True)
        self.outputs: list[bytes] = []

    def env(self, secret: str | None = None, creds: bool = True) -> dict[str, str]:
        drop = ("ALIBABA_CLOUD_", "ALICLOUD_", "EGRESSCTL_", "VPCLAB_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and "proxy" not in k.lower()}
        env.update({"HOME": str(self.home), "NO_PROXY": "127.0.0.1,localhost",
                    "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true", "EGRESSCTL_ENDPOINT": self.lab.endpoint,
                    "EGRESSCTL_REGION": REGION})
        if creds:
            env.update({"ALIBABA_CLOUD_ACCESS_KEY_ID": self.key_id,
                        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret or self.secret})
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "egressctl", *args]

    def __call__(self, *args: str, secret: str | None = None, creds: bool = True, timeout: float = 180
                 ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.argv(*args), cwd=self.tmp, env=self.env(secret, creds), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        self.outputs += [p.stdout, p.stderr]
        return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(*args), cwd=self.tmp, env=self.env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _blobs(data: bytes) -> Iterator[bytes]:
    """The data, and what every base64 run in it decodes to (at each alignment, and gunzipped)."""
    yield data
    for m in re.finditer(rb"[A-Za-z0-9+/]{16,}={0,2}", data):
        run = m.group()
        for skip in range(4):
            chunk = run[skip:]
            chunk = chunk[: len(chunk) - len(chunk) % 4]
            try:
                raw = base64.b64decode(chunk)
            except (binascii.Error, ValueError):
                continue
            yield raw
            if raw[:2] == b"\x1f\x8b":
                try:
                    unzipped = gzip.decompress(raw)
                except (OSError, EOFError):
                    continue
                yield unzipped


def leaks(data: bytes, secret: str) -> list[str]:
    forms = {"raw": secret.encode(), "url-quoted": quote(secret, safe="").encode(),
             "json-escaped": json.dumps(secret).encode()[1:-1]}
    found = []
    for blob in _blobs(data):
        for name, form in forms.items():
            if form in blob:
                found.append(name if blob is data else f"{name} inside base64")
    return found


def scan(sources: dict[str, bytes], *secrets_: str) -> dict[str, list[str]]:
    return {f"{where} ({s[:12]}...)": got for where, data in sources.items() for s in secrets_
            if (got := leaks(data, s))}


def test_the_scanner_finds_what_it_looks_for() -> None:
    """The negative control: every encoding the audit searches is found when it is there."""
    s = SECRET
    assert leaks(f"x{s}y".encode(), s) == ["raw"]
    assert leaks(quote(s, safe="").encode(), s) == ["url-quoted"]
    assert leaks(json.dumps({"k": s}).encode(), s) == ["json-escaped"]
    for prefix in (b"", b"a", b"ab", b"abc"):
        assert leaks(b"echo " + base64.b64encode(prefix + s.encode() + b" tail") + b" | base64 -d", s)
        assert leaks(base64.b64encode(gzip.compress(b"prefix " + s.encode())), s)


# --- the secret, through a whole session -------------------------------------------------------------------

SESSION_SCENARIO: dict[str, Any] = {
    "region": REGION,
    "vpcs": [{
        "name": "v", "cidr": "10.0.0.0/16",
        "vswitches": [{"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.0.1.0/24"},
                      {"name": "n", "zone": "cn-hangzhou-h", "cidr": "10.0.2.0/24"}],
        "security_groups": [{"name": "sg", "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
        "nat_gateways": [{"name": "ngw", "vswitch": "n", "snat": [{"vswitch": "a"}]}],
        "instances": [{"name": "web", "vswitch": "a", "security_groups": ["sg"], "count": 5, "public_ip": "auto"},
                      {"name": "app", "vswitch": "a", "security_groups": ["sg"]}],
    }],
}


def test_the_secret_appears_nowhere_in_a_whole_session(tmp_path: Path) -> None:
    guest = FakeGuest()
    state = tmp_path / "labstate"
    with Lab(SESSION_SCENARIO, access_key_id=KEY_ID, access_key_secret=SECRET, executor=guest, state_dir=state,
             faults=Faults()) as lab:
        guest.world = lab.world
        cli = Cli(lab, tmp_path)
        profiles = cli.home / ".aliyun" / "config.json"
        profiles.parent.mkdir()
        profiles.write_text(json.dumps({"current": "good", "profiles": [
            {"name": "good", "mode": "AK", "access_key_id": KEY_ID, "access_key_secret": SECRET,
             "region_id": REGION},
            {"name": "bad", "mode": "AK", "access_key_id": KEY_ID, "access_key_secret": WRONG, "region_id": REGION}]}))
        ids = sorted(i for n, i in lab.ids["instances"].items() if n.startswith("web"))

        assert cli("audit").returncode == 0
        assert cli("audit", "--output", "json").returncode == 0
        assert cli("plan", "--instances", ",".join(ids[1:]), "-o", "plan.json").returncode == 0
        assert cli("plan", "--instances", ids[0], "--guest", "print", "-o", "print.json", "--output", "json"
                   ).returncode == 0
        assert cli("plan", "--all", "-o", "all.json", "--output", "json").returncode == 0
        # a failing run: one guest refuses, for good
        guest.fail_for[ids[2]] = "refused by the guest"
        failing = cli("apply", "plan.json", "--yes", "--output", "json", "--poll-interval", "0.05")
        assert failing.returncode == 1 and ids[2] in json.loads(failing.stdout.splitlines()[-1])["failed"]
        guest.fail_for.clear()
        # a run killed in the middle (every call slowed down so that there is a middle), then resumed
        assert cli("rollback", "plan.json", "--yes", "--poll-interval", "0.05").returncode == 0
        lab.faults.set(*parse_rules({"rules": [{"kind": "latency", "min_ms": 200, "max_ms": 300}]}))
        proc = cli.popen("apply", "plan.json", "--yes", "--poll-interval", "0.05")
        time.sleep(2.0)
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        cli.outputs += [out, err]
        lab.faults.set([])
        st = cli("status", "plan.json", "--output", "json")
        assert "running" in {r["status"] for r in json.loads(st.stdout)["instances"]}, "not killed mid-run"
        assert cli("apply", "plan.json", "--yes", "--poll-interval", "0.05").returncode == 0
        assert cli("apply", "print.json", "--yes", "--poll-interval", "0.05").returncode == 1  # paused: print
        assert list((tmp_path / "print.json.guest").iterdir())
        for args in (["status", "plan.json"], ["status", "plan.json", "--output", "json"]):
            assert cli(*args).returncode == 0
        for fmt in ("table", "json"):
            v = cli("verify", "plan.json", "--skip", "inbound", "--echo-url", "http://192.0.2.10/", "--timeout", "60",
                    "--output", fmt)
            assert v.returncode == 0, v.stdout + v.stderr
        assert cli("rollback", "plan.json", "--yes", "--output", "json", "--poll-interval", "0.05").returncode == 0
        # credentials from a profile of the aliyun CLI's config, a wrong one, and one that does not exist
        env_free = {"creds": False}
        assert cli("--profile", "good", "audit", **env_free).returncode == 0  # type: ignore[arg-type]
        bad = cli("--profile", "bad", "audit", **env_free)  # type: ignore[arg-type]
        assert bad.returncode == 2 and "SignatureDoesNotMatch" in bad.stderr
        assert cli("--profile", "nosuch", "audit", **env_free).returncode == 2  # type: ignore[arg-type]
        # refusals: the wrong secret, a storm, a hand-edited plan
        for args in (["audit"], ["apply", "plan.json", "--yes"], ["rollback", "plan.json", "--yes"]):
            assert cli(*args, secret=WRONG).returncode == 2
        lab.faults.set(*parse_rules({"rules": [{"kind": "storm", "actions": "Describe*", "duration_s": 600}]}))
        assert cli("audit", timeout=120).returncode == 1
        lab.faults.set([])
        edited = tmp_path / "edited.json"
        edited.write_text((tmp_path / "plan.json").read_text().replace('"version": 1', '"version": 1 '))
        edited.write_text(edited.read_text().replace(ids[1], ids[1][:-1] + "x"))
        assert cli("apply", str(edited), "--yes").returncode == 2
        assert cli("iam-policy").returncode == 0
        with lab.world.lock:
            world_state = json.dumps(snapshot(lab), default=str).encode()
    # everything produced: outputs, every file under the test's directory (plan, journal and its WAL, lock,
    # printed guest scripts, the lab's persisted state), the scripts the guests received, the lab's world
    sources: dict[str, bytes] = {f"output #{i}": b for i, b in enumerate(cli.outputs)}
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != profiles]
    assert {"plan.json", "plan.json.journal", "plan.json.lock", "print.json", "state.db"} <= {p.name for p in files}
    sources.update({str(p.relative_to(tmp_path)): p.read_bytes() for p in files})
    sources.update({f"guest script #{i} ({r.instance_id})": r.script.encode() for i, r in enumerate(guest.runs)})
    sources["the lab's world"] = world_state
    assert len(guest.runs) >= 6 and sum(len(b) for b in sources.values()) > 100_000
    print(f"\nsecret audit: {len(cli.outputs) // 2} egressctl runs, {len(sources)} sources, "
          f"{sum(len(b) for b in sources.values())} bytes searched")
    assert scan(sources, SECRET, WRONG) == {}
    # the key id is not a secret, but it must not be mistaken for one either: it is in the lab, not in our files
    assert not [w for w, b in sources.items() if KEY_ID.encode() in b and w.startswith(("plan", "print"))]


# --- shell metacharacters in names, tags and descriptions ---------------------------------------------------

MARK = f"/tmp/egc-pwned-{secrets.token_hex(6)}"
EVIL = [f"$(touch {MARK}-1)", f"`touch {MARK}-2`", f"x; touch {MARK}-3; #", f"a\ntouch {MARK}-4\nb",
        f"'\"; touch {MARK}-5; echo \"'", f"&& touch {MARK}-6 || true", f"| touch {MARK}-7 >",
        "${IFS}$((1+1))\\\\n[/red]{{}}%s%n"]


def evil_scenario() -> dict[str, Any]:
    return {
        "region": REGION,
        "vpcs": [{
            "name": f"vpc {EVIL[0]}", "cidr": "10.0.0.0/16",
            "vswitches": [{"name": "a", "zone": "cn-hangzhou-h", "cidr": "10.0.1.0/24"},
                          {"name": "n", "zone": "cn-hangzhou-h", "cidr": "10.0.2.0/24"}],
            "security_groups": [{"name": "sg", "description": EVIL[1],
                                 "rules": [{"protocol": "tcp", "ports": "22/22"}]}],
            "nat_gateways": [{"name": "ngw", "vswitch": "n", "snat": [{"vswitch": "a"}]}],
            "instances": [{"name": f"web{i} {e}", "vswitch": "a", "security_groups": ["sg"], "public_ip": "auto",
                           "description": EVIL[(i + 1) % len(EVIL)],
                           "tags": {"app": e, "note": EVIL[(i + 2) % len(EVIL)]}}
                          for i, e in enumerate(EVIL)],
        }],
    }


def _markers() -> list[Path]:
    return sorted(Path("/tmp").glob(Path(MARK).name + "*"))


def _check_scripts(scripts: dict[str, str]) -> None:
    assert scripts
    for where, text in scripts.items():
        for blob in _blobs(text.encode()):
            for e in EVIL:
                assert e.encode() not in blob, f"{e!r} reached {where}"
            assert b"egc-pwned" not in blob, f"a marker command reached {where}"


def _metachar_session(lab: Lab, tmp: Path, guest: FakeGuest | None) -> dict[str, str]:
    cli = Cli(lab, tmp, key_id=lab.access_key_id, secret="vpclab-default-secret-not-for-any-cloud")
    a = cli("audit")
    assert a.returncode == 0, a.stderr
    aj = cli("audit", "--output", "json")
    names = {r["name"] for r in json.loads(aj.stdout)["instances"]}
    assert {f"web{i} {e}" for i, e in enumerate(EVIL)} <= names  # shown as they are, not interpreted
    ids = [lab.ids["instances"][f"web{i} {e}"] for i, e in enumerate(EVIL)]
    assert cli("plan", "--all", "-o", "all.json").returncode == 0
    p = cli("plan", "--instances", ",".join(ids[1:]), "-o", "plan.json")
    assert p.returncode == 0, p.stderr
    pr = cli("plan", "--instances", ids[0], "--guest", "print", "-o", "print.json")
    assert pr.returncode == 0, pr.stderr
    ap = cli("apply", "plan.json", "--yes", "--poll-interval", "0.05")
    assert ap.returncode == 0, ap.stdout + ap.stderr
    assert cli("apply", "print.json", "--yes", "--poll-interval", "0.05").returncode == 1  # printed: paused
    assert cli("status", "plan.json").returncode == 0
    if guest is not None:
        v = cli("verify", "plan.json", "--skip", "inbound", "--echo-url", "http://192.0.2.10/", "--timeout", "60")
        assert v.returncode == 0, v.stdout + v.stderr
    rb = cli("rollback", "plan.json", "--yes", "--poll-interval", "0.05")
    assert rb.returncode == 0, rb.stdout + rb.stderr
    printed = {str(f): f.read_text() for f in (tmp / "print.json.guest").iterdir()}
    return printed


def test_shell_metacharacters_in_names_tags_and_descriptions_never_reach_a_shell(tmp_path: Path) -> None:
    guest = FakeGuest()
    try:
        with Lab(evil_scenario(), executor=guest) as lab:
            guest.world = lab.world
            printed = _metachar_session(lab, tmp_path, guest)
            with lab.world.lock:  # the names really are in the lab, as given
                assert {f"web{i} {e}" for i, e in enumerate(EVIL)} <= {
                    o.name for o in lab.world.tables["instance"].values()}
        modes = Counter(m for r in guest.runs for m in re.findall(r"^EGRESSCTL_MODE=(\w+)$", r.script, re.M))
        assert modes["apply"] >= 1 and modes["remove"] >= 1 and any("EGRESSCTL_PROBE" in r.script for r in guest.runs)
        _check_scripts({f"guest script #{i}": r.script for i, r in enumerate(guest.runs)} | printed)
        assert _markers() == []
    finally:
        for m in _markers():
            m.unlink()


def _dp_reason() -> str | None:
    from vpclab.dataplane import kernel

    return kernel.unavailable_reason()


@pytest.mark.root
def test_shell_metacharacters_on_the_real_data_plane(tmp_path: Path) -> None:
    reason = _dp_reason()
    if reason is not None:
        pytest.skip(f"data plane unavailable: {reason}")
    try:
        lab = Lab(evil_scenario(), dataplane="on")
        lab.start()
        try:
            printed = _metachar_session(lab, tmp_path, None)
            with lab.world.lock:
                scripts = {f"invocation {o.id}": o.content for o in lab.world.tables["invocation"].values()}
        finally:
            lab.stop()
        decoded = {}
        for where, content in scripts.items():
            try:
                decoded[where] = base64.b64decode(content).decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                decoded[where] = content
        _check_scripts(decoded | printed)
        assert _markers() == [], "a command hidden in a name ran"
    finally:
        for m in _markers():
            m.unlink()


# --- the lab cleans only its own namespaces -----------------------------------------------------------------

def _ns_exists(name: str) -> bool:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return name in {line.split()[0] for line in out.splitlines() if line.split()}


@pytest.mark.root
def test_the_lab_cleans_only_its_own_namespaces(tmp_path: Path) -> None:
    reason = _dp_reason()
    if reason is not None:
        pytest.skip(f"data plane unavailable: {reason}")
    from vpclab.dataplane import REGISTRY_DIR

    if (REGISTRY_DIR / "vlffff.json").exists():
        pytest.skip("a lab with the prefix vlffff is registered on this machine")
    foreign, lookalike = f"egc-foreign-{secrets.token_hex(3)}", "vlffff-x"
    # a crashed lab's registry (its process is gone) that also names namespaces that are not its own
    stale = f"vl{secrets.token_hex(2)}"
    while (REGISTRY_DIR / f"{stale}.json").exists() or stale == "vlffff":
        stale = f"vl{secrets.token_hex(2)}"
    own, registry, base = f"{stale}-i0", REGISTRY_DIR / f"{stale}.json", tmp_path / stale
    dead = subprocess.Popen(["true"])
    dead.wait()
    made: list[str] = []
    try:
        for ns in (foreign, lookalike, own):
            assert not _ns_exists(ns), ns
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        base.mkdir()
        REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
        registry.write_text(json.dumps({"prefix": stale, "pid": dead.pid, "base": str(base),
                                        "namespaces": [own, foreign, lookalike, "lo", "../etc"]}))
        with Lab(SEED, dataplane="on") as lab:
            prefix = lab.dataplane.prefix
            assert _ns_exists(f"{prefix}-edge")
        assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
                    .stdout.split() if n.startswith(prefix + "-")], "the lab left namespaces behind"
        assert _ns_exists(foreign) and _ns_exists(lookalike) and _ns_exists(own)
        one = subprocess.run([sys.executable, "-m", "vpclab", "clean", "--lab", "vlffff"], capture_output=True,
                             text=True, timeout=60)
        assert one.returncode == 0 and "removed 0 namespaces" in one.stdout, one.stdout + one.stderr
        allc = subprocess.run([sys.executable, "-m", "vpclab", "clean"], capture_output=True, text=True, timeout=120)
        assert allc.returncode == 0, allc.stderr
        assert own in allc.stdout and foreign not in allc.stdout and lookalike not in allc.stdout
        assert _ns_exists(foreign) and _ns_exists(lookalike), "vpclab clean removed a namespace it does not own"
        assert not _ns_exists(own) and not registry.exists() and not base.exists()  # its own: gone
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        registry.unlink(missing_ok=True)


# --- refusals: clear, cheap, and nothing changed -------------------------------------------------------------

@pytest.fixture
def counted() -> Iterator[tuple[Lab, FakeGuest, Counter[str]]]:
    """The seed lab in-process with the distinctive key, faults on demand, and every request counted."""
    guest = FakeGuest()
    with Lab(SEED, access_key_id=KEY_ID, access_key_secret=SECRET, executor=guest, faults=Faults()) as lab:
        guest.world = lab.world
        seen: Counter[str] = Counter()
        lock = threading.Lock()
        orig = lab.api.handle

        def counting(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Any:
            status, extra, payload = orig(method, target, headers, body)
            with lock:
                seen[f"{status}"] += 1
            return status, extra, payload

        lab.api.handle = counting  # type: ignore[method-assign]
        yield lab, guest, seen


def test_a_storm_during_plan_writes_no_plan(tmp_path: Path, counted: tuple[Lab, FakeGuest, Counter[str]]) -> None:
    lab, _, seen = counted
    cli = Cli(lab, tmp_path)
    before = snapshot(lab)
    lab.faults.set(*parse_rules({"rules": [{"kind": "storm", "actions": "*", "duration_s": 600}]}))
    t = time.monotonic()
    p = cli("plan", "--all", "-o", "plan.json", timeout=150)
    took = time.monotonic() - t
    assert p.returncode == 1, (p.stdout, p.stderr)  # docs/cli.md: 1 = the cloud refused a read
    msg = " ".join(p.stderr.split())
    assert "ServiceUnavailable" in msg and "the cloud refused" in msg and "Traceback" not in p.stderr
    assert p.stdout == ""
    assert not list(tmp_path.glob("plan.json*")), "a plan (or its temporary file) was written"
    assert snapshot(lab) == before
    # retried with backoff, a bounded number of times, then given up: no retry storm
    assert 2 <= seen["503"] <= 8 and sum(seen.values()) == seen["503"], seen
    assert took < 120


def test_a_storm_that_passes_is_ridden_out(tmp_path: Path, counted: tuple[Lab, FakeGuest, Counter[str]]) -> None:
    lab, _, seen = counted
    cli = Cli(lab, tmp_path)
    lab.faults.set(*parse_rules({"rules": [{"kind": "storm", "actions": "*", "duration_s": 1.5}]}))
    p = cli("plan", "--all", "-o", "plan.json", "--output", "json")
    assert p.returncode == 0, p.stderr
    assert seen["503"] >= 1 and plan_mod.load(tmp_path / "plan.json").instances


def test_wrong_credentials_at_apply_and_rollback_change_nothing(tmp_path: Path,
                                                                counted: tuple[Lab, FakeGuest, Counter[str]]) -> None:
    lab, _, seen = counted
    cli = Cli(lab, tmp_path)
    assert cli("plan", "--instances", lab.ids["instances"]["web-1"], "-o", "plan.json").returncode == 0
    journal = tmp_path / "plan.json.journal"
    before = snapshot(lab)
    for args in (["apply", "plan.json", "--yes"], ["apply", "plan.json", "--yes", "--output", "json"],
                 ["rollback", "plan.json", "--yes"], ["verify", "plan.json", "--skip", "egress,inbound"]):
        seen.clear()
        p = cli(*args, secret=WRONG)
        msg = " ".join(p.stderr.split())
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "SignatureDoesNotMatch" in msg and "credentials" in msg and p.stdout == ""
        assert sum(seen.values()) == 1, (args, seen)  # refused once, never retried
        assert not journal.exists()
    assert snapshot(lab) == before


class Revoker:
    """A fault hook that revokes the lab's keys when ``action`` is first called (that call was already
    authenticated; every later one is refused), and counts the answers from then on."""

    def __init__(self, action: str):
        self.action = action
        self.lab: Lab | None = None
        self.at: float | None = None
        self.answers: Counter[int] = Counter()
        self.keys: dict[str, str] = {}

    def arm(self, lab: Lab) -> None:
        self.lab, self.keys = lab, dict(lab.api.keys)
        orig = lab.api.handle

        def counting(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Any:
            out = orig(method, target, headers, body)
            if self.at is not None:
                self.answers[out[0]] += 1
            return out

        lab.api.handle = counting  # type: ignore[method-assign]

    def restore(self) -> None:
        assert self.lab is not None
        self.lab.api.keys.update(self.keys)

    def __call__(self, action: str, access_key_id: str, region: str) -> None:
        if action == self.action and self.lab is not None and self.at is None:
            self.lab.api.keys.clear()
            self.at = time.monotonic()


@contextmanager
def revoked_apply(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Five instances, one at a time; the keys are revoked as the first ENI is created, so the next call (that
    instance's attach) is refused."""
    from .test_soak import fleet, public_ips

    guest = FakeGuest()
    revoker = Revoker("CreateNetworkInterface")
    with Lab(fleet(5), executor=guest, latency="realistic", time_scale=0.05, seed=3, faults=revoker) as lab:
        guest.world = lab.world
        p, _ = workflows.make_plan(cloud_for(lab), REGION, instance_ids=None, select_all=True, vpc_id=None,
                                   tags=None, opts=Options())
        path = tmp_path / "plan.json"
        plan_mod.save(p, path)
        before = public_ips(lab)
        revoker.arm(lab)
        cli = Cli(lab, tmp_path, key_id=lab.access_key_id, secret=revoker.keys[lab.access_key_id])
        r = cli("apply", "plan.json", "--yes", "--output", "json", "--parallel", "1", "--poll-interval", "0.05",
                timeout=60)
        yield {"lab": lab, "plan": p, "path": path, "before": before, "revoker": revoker, "cli": cli, "run": r,
               "summary": json.loads(r.stdout.splitlines()[-1])}


def test_credentials_revoked_mid_apply_stop_every_instance_at_once(tmp_path: Path) -> None:
    """Revoked just before a step's call: the first refusal stops the run, no other instance starts."""
    from .test_soak import check_fleet, where

    with revoked_apply(tmp_path) as c:
        lab, p, revoker, summary = c["lab"], c["plan"], c["revoker"], c["summary"]
        # exit 1, not the 2 of docs/cli.md's error table ("AuthError ... exit 2"): the run did change things
        assert c["run"].returncode == 1 and summary["aborted"].startswith("InvalidAccessKeyId.NotFound"), summary
        # the revoking call itself (already authenticated) and then one refusal, never retried
        assert revoker.answers == {200: 1, 404: 1}, revoker.answers
        assert len(summary["failed"]) == 1 and not summary["done"] and not summary["paused"], summary
        (first, why), = summary["failed"].items()
        assert why.startswith("attach: ") and "InvalidAccessKeyId.NotFound" in why
        events = [json.loads(line) for line in c["run"].stdout.splitlines()]
        assert {e["instance_id"] for e in events if e["event"] == "instance_started"} == {first}
        with lab.world.lock:
            assert {where(lab, i) for i in p.instances} <= {"fixed", "primary"}  # nothing broken
        revoker.restore()
        again = c["cli"]("apply", "plan.json", "--yes", "--poll-interval", "0.05")
        assert again.returncode == 0, again.stdout + again.stderr
        check_fleet(lab, p, c["path"], c["before"], {i.instance_id: "eni" for i in p.instances})
        with lab.world.lock:
            assert len([e for e in lab.world.all(Eni) if e.eni_type == "Secondary"]) == len(p.instances)


def test_bug_an_aborted_run_reports_the_instances_it_never_started(tmp_path: Path) -> None:
    with revoked_apply(tmp_path) as c:
        s, p = c["summary"], c["plan"]
        assert s["aborted"] and len(s["failed"]) == 1
        assert sorted([*s["done"], *s["failed"], *s["paused"], *s["not_started"]]) == sorted(
            i.instance_id for i in p.instances), s


def test_credentials_revoked_while_every_instance_waits(tmp_path: Path) -> None:
    from .test_soak import fleet

    guest = FakeGuest()
    revoker = Revoker("AttachNetworkInterface")  # then the only calls are the waiters' polls
    with Lab(fleet(1), executor=guest, latency="realistic", time_scale=0.05, seed=3, faults=revoker) as lab:
        guest.world = lab.world
        p, _ = workflows.make_plan(cloud_for(lab), REGION, instance_ids=None, select_all=True, vpc_id=None,
                                   tags=None, opts=Options())
        plan_mod.save(p, tmp_path / "plan.json")
        revoker.arm(lab)
        cli = Cli(lab, tmp_path, key_id=lab.access_key_id, secret=revoker.keys[lab.access_key_id])
        try:
            r = cli("apply", "plan.json", "--yes", "--output", "json", "--poll-interval", "0.05", timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"apply still ran 20 s after the credentials were revoked; answers since: "
                        f"{dict(revoker.answers)}")
        summary = json.loads(r.stdout.splitlines()[-1])
        assert summary["aborted"].startswith("InvalidAccessKeyId.NotFound"), summary
        assert revoker.answers[404] <= 3, revoker.answers
