"""The SSH and print runners' plumbing (the Cloud Assistant runner runs in every apply test)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from egressctl.guest.runners import GuestJob, PrintRunner, SshRunner
from egressctl.guest.script import GuestRouting

ROUTING = GuestRouting(mac="00:16:3e:00:00:11", ip="192.168.3.11", prefix=24, gateway="192.168.3.253",
                       eni_id="eni-bp1abcdefgh12345")

RESULT = json.dumps({"version": 1, "mode": "apply", "status": "changed", "eni": None, "mac": None, "ip": None,
                     "prefix": None, "gateway": None, "table": None, "priority": None, "dev": None,
                     "rp_filter": None, "changes": ["x"], "differences": [], "errors": [], "items": []})
FAKE_SSH = r"""#!/bin/sh
# a stand-in for ssh: records its arguments and stdin, never runs anything
printf '%s\n' "$@" > "$FAKE_SSH_DIR/argv"
cat > "$FAKE_SSH_DIR/stdin"
case " $* " in *" fail@"*) echo "Permission denied (publickey)." >&2; exit 255;; esac
echo 'EGRESSCTL_RESULT """ + RESULT + """'
"""


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(ssh.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_DIR", str(tmp_path))
    return tmp_path


def _wait(runner: SshRunner, handle: str):
    for _ in range(200):
        out = runner.poll([handle])[handle]
        if out is not None:
            return out
        time.sleep(0.02)
    raise AssertionError("no outcome")


def test_ssh_runner_checks_host_keys_and_sends_the_script_on_stdin(fake_ssh: Path) -> None:
    runner = SshRunner(user="root", key_file="/keys/id_ed25519", known_hosts="/keys/known_hosts")
    handle = runner.start(GuestJob("i-1", ROUTING, "apply", host="203.0.113.10"), "tok")
    out = _wait(runner, handle)
    assert out.ok and out.result and out.result["status"] == "changed"
    argv = (fake_ssh / "argv").read_text().splitlines()
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
    assert argv[argv.index("-i") + 1] == "/keys/id_ed25519" and "UserKnownHostsFile=/keys/known_hosts" in argv
    assert argv[-2:] == ["root@203.0.113.10", "sh -s"]
    script = (fake_ssh / "stdin").read_text()
    assert script.startswith("#!/bin/sh") and "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253" in script
    # the same handle is not run twice
    assert runner.start(GuestJob("i-1", ROUTING, "apply", host="203.0.113.10"), "tok") == handle


def test_ssh_runner_reports_the_guests_own_error(fake_ssh: Path) -> None:
    runner = SshRunner(user="fail")
    out = _wait(runner, runner.start(GuestJob("i-2", ROUTING, "apply", host="203.0.113.11"), "t2"))
    assert not out.ok and out.exit_code == 255 and "Permission denied" in out.message
    with pytest.raises(ValueError, match="no address"):
        runner.start(GuestJob("i-3", ROUTING, "apply"), "t3")


def test_print_runner_writes_a_script_per_instance_and_waits_for_a_person(tmp_path: Path) -> None:
    runner = PrintRunner(tmp_path / "scripts")
    handle = runner.start(GuestJob("i-9", ROUTING, "apply"), "tok")
    path = tmp_path / "scripts" / "i-9-apply.sh"
    assert path.is_file() and os.access(path, os.X_OK)
    assert "EGRESSCTL_MODE=apply" in path.read_text()
    out = runner.poll([handle])[handle]
    assert out is not None and out.manual and not out.ok and "--guest-done" in out.message
    json.dumps(out.__dict__, default=str)  # plain data
