"""The secret, where test_security.py does not look (issue 6): on the wire - every request egressctl sends
and every answer it gets, byte for byte, through retries of injected 503s and lost responses - and in
``vpclab serve``'s own stdout, stderr and ``--state-dir``.  Requests are HMAC-signed, so the secret has
no reason to travel; searched raw, URL-quoted, JSON-escaped and Base64, the wrong secret too.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vpclab import Lab
from vpclab.faults import Faults, parse_rules

from .conftest import REGION, SEED, FakeGuest
from .test_cli import _clean_env, _forms
from .test_lock import EGRESSCTL

SECRET = "EgcWire-" + secrets.token_hex(16)
WRONG = "EgcWireWrong-" + secrets.token_hex(16)
KEY_ID = "LTAI5tWireTest" + secrets.token_hex(6)
FAULTS = {"seed": 9, "rules": [{"kind": "error", "actions": "*", "rate": 0.1},
                               {"kind": "lost_response", "actions": "*", "rate": 0.08}]}


def _run(tmp: Path, endpoint: str, outputs: list[bytes], *args: str, secret: str = SECRET) -> int:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {**_clean_env(), "HOME": str(home), "NO_PROXY": "127.0.0.1,localhost", "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret, "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    p = subprocess.run([*EGRESSCTL, "--region", REGION, "--endpoint", endpoint, *args], cwd=tmp, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=180)
    outputs += [p.stdout, p.stderr]
    return p.returncode


def _nowhere(blobs: dict[str, bytes], *secrets_: str) -> None:
    for s in secrets_:
        for form in _forms(s):
            for name, data in blobs.items():
                assert form not in data, f"a form of the secret is in {name}"


def test_the_secret_never_travels_on_the_wire(tmp_path: Path) -> None:
    guest = FakeGuest()
    wire: list[bytes] = []
    rules, seed = parse_rules(FAULTS)
    with Lab(SEED, executor=guest, access_key_id=KEY_ID, access_key_secret=SECRET, faults=Faults(rules, seed)) as lab:
        guest.world = lab.world
        orig = lab.api.handle

        def capture(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Any:
            wire.append(f"{method} {target}\n".encode() + json.dumps(headers).encode() + b"\n" + body)
            out = orig(method, target, headers, body)
            wire.append(json.dumps(out[1]).encode() + out[2])
            return out

        lab.api.handle = capture  # type: ignore[method-assign]
        outputs: list[bytes] = []
        web1 = lab.ids["instances"]["web-1"]
        assert _run(tmp_path, lab.endpoint, outputs, "audit", "--output", "json") == 0
        assert _run(tmp_path, lab.endpoint, outputs, "plan", "--instances", web1, "-o", "plan.json") == 0
        assert _run(tmp_path, lab.endpoint, outputs, "apply", "plan.json", "--yes", "--poll-interval", "0.05") == 0
        assert _run(tmp_path, lab.endpoint, outputs, "rollback", "plan.json", "--yes", "--poll-interval", "0.05") == 0
        assert _run(tmp_path, lab.endpoint, outputs, "audit", secret=WRONG) == 2
        fired = lab.faults.counts()
    assert sum(fired.values()) > 0 and len(wire) > 60, (fired, len(wire))
    assert any(b"Authorization" in w or b"authorization" in w for w in wire), "requests were not captured"
    _nowhere({f"wire #{i}": w for i, w in enumerate(wire)} | {f"output #{i}": o for i, o in enumerate(outputs)},
             SECRET, WRONG)


def test_vpclab_serve_keeps_the_secret_out_of_its_outputs_and_state(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yaml"
    faults.write_text(json.dumps(FAULTS))
    state = tmp_path / "lab-state"
    lab_out, lab_err = tmp_path / "vpclab.out", tmp_path / "vpclab.err"
    env = {**_clean_env(), "VPCLAB_ACCESS_KEY_ID": KEY_ID, "VPCLAB_ACCESS_KEY_SECRET": SECRET}
    with lab_out.open("wb") as o, lab_err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "vpclab", "serve", "--scenario", str(SEED), "--throttle",
                                 "off", "--dataplane", "off", "--state-dir", str(state), "--faults", str(faults)],
                                stdout=o, stderr=e, env=env)
    outputs: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while not lab_out.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, lab_err.read_text()
            time.sleep(0.05)
        endpoint = json.loads(lab_out.read_text().splitlines()[0])["endpoint"]
        assert _run(tmp_path, endpoint, outputs, "audit") == 0
        assert _run(tmp_path, endpoint, outputs, "plan", "--all", "--guest", "print", "--allow-billing-change",
                    "--allow-stop", "-o", "plan.json") == 0
        # the printed guest step pauses the run: exit 1
        assert _run(tmp_path, endpoint, outputs, "apply", "plan.json", "--yes", "--poll-interval", "0.05") == 1
        assert _run(tmp_path, endpoint, outputs, "audit", secret=WRONG) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert (state / "state.db").exists() and lab_err.exists()
    files = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert str(lab_out) in files and any("state.db" in f for f in files)
    _nowhere(files | {f"output #{i}": o for i, o in enumerate(outputs)}, SECRET, WRONG)
