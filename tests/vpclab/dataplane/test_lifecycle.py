"""The data plane's lifecycle as a process: serve, exec, status, crash, clean; two labs side by side."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.egressctl.conftest import SEED

from .conftest import lab_namespaces


def _serve(*args: str) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen([sys.executable, "-m", "vpclab", "serve", "--scenario", str(SEED), "--dataplane", "on",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line, proc.stderr.read()  # type: ignore[union-attr]
    return proc, json.loads(line)


def _vpclab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vpclab", *args], capture_output=True, text=True, timeout=60)


def test_two_labs_exec_status_and_a_crash_cleaned_by_the_next_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    a, ra = _serve("--state-dir", str(state))
    b, rb = _serve()
    try:
        assert ra["dataplane"] == "on" and rb["dataplane"] == "on" and ra["lab"] != rb["lab"]
        assert ra["echo_url"] == "http://192.0.2.10/"
        # exec on an instance of lab a: it has its own addresses
        r = _vpclab("exec", "--lab", ra["lab"], "web-1", "--", "ip", "-4", "-br", "addr", "show", "eth0")
        assert r.returncode == 0 and "192.168.3.10/24" in r.stdout, r.stderr
        r = _vpclab("exec", "--lab", rb["lab"], "operator", "--", "python3", "-c",
                    "import socket;s=socket.create_connection(('203.0.113.10',22),3);print(s.recv(99).decode())")
        assert "web-1" in r.stdout, r.stderr
        st = json.loads(_vpclab("status", "--json").stdout)
        assert {ra["lab"], rb["lab"]} <= {x["prefix"] for x in st if x["alive"]}
        # several labs run: exec needs --lab
        assert _vpclab("exec", "web-1", "--", "true").returncode == 2
        # lab a crashes hard: its namespaces stay ...
        a.send_signal(signal.SIGKILL)
        a.wait()
        assert lab_namespaces(ra["lab"])
        assert "STALE" in _vpclab("status", "--lab", ra["lab"]).stdout
        # ... until the next start with the same state dir removes them, leaving lab b alone
        a2, ra2 = _serve("--state-dir", str(state))
        try:
            assert lab_namespaces(ra["lab"]) == []
            assert lab_namespaces(rb["lab"])
            assert ra2["lab"] != ra["lab"]
        finally:
            a2.send_signal(signal.SIGTERM)
            assert a2.wait(timeout=30) == 0
        assert lab_namespaces(ra2["lab"]) == []
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=30)
    assert lab_namespaces(rb["lab"]) == []


def test_clean_removes_a_stale_lab_and_refuses_a_running_one() -> None:
    proc, ready = _serve()
    try:
        r = _vpclab("clean", "--lab", ready["lab"])
        assert r.returncode == 2 and "running" in r.stderr
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert lab_namespaces(ready["lab"])
        r = _vpclab("clean")
        assert r.returncode == 0 and ready["lab"] in r.stdout
        assert lab_namespaces(ready["lab"]) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _vpclab("clean", "--lab", ready["lab"])
