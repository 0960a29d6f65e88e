"""One run per plan at a time, and a journal that cannot be read is refused: the CLI as a subprocess
against an in-process lab (whose Cloud Assistant executor is the tests' FakeGuest)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from egressctl import journal, workflows
from egressctl import plan as plan_mod
from egressctl.preflight import Options
from vpclab import DEFAULT_ACCESS_KEY_SECRET, Lab
from vpclab.resources.eips import Eip
from vpclab.resources.enis import Eni

from .conftest import REGION, SEED, FakeGuest, cloud_for

_EXE = Path(sys.executable).with_name("egressctl")
EGRESSCTL = [str(_EXE)] if _EXE.exists() else [sys.executable, "-c", "from egressctl.cli import main; main()"]


def snapshot(lab: Lab) -> dict[str, dict[str, dict[str, Any]]]:
    with lab.world.lock:
        return {kind: {rid: obj.to_dict() for rid, obj in table.items()}
                for kind, table in lab.world.tables.items() if table}


def env_for(lab: Lab, home: Path) -> dict[str, str]:
    drop = ("ALIBABA_CLOUD_", "ALICLOUD_", "EGRESSCTL_", "VPCLAB_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(drop) and "proxy" not in k.lower()}
    home.mkdir(exist_ok=True)
    return {**base, "HOME": str(home), "NO_PROXY": "127.0.0.1,localhost",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": lab.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEFAULT_ACCESS_KEY_SECRET,
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}


def argv(lab: Lab, *args: str) -> list[str]:
    return [*EGRESSCTL, "--region", REGION, "--endpoint", lab.endpoint, *args]


def run(lab: Lab, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(lab, *args), cwd=tmp, env=env_for(lab, tmp / "home"), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def flat(text: str) -> str:
    return " ".join(text.split())


def tool_enis(lab: Lab, instance_id: str) -> list[Eni]:
    return [e for e in lab.world.all(Eni) if e.eni_type == "Secondary" and
            e.tag_dict().get("egressctl:instance") == instance_id]


def assert_migrated(lab: Lab, ids: list[str]) -> None:
    for iid in ids:
        enis = tool_enis(lab, iid)
        assert len(enis) == 1 and enis[0].status == "InUse", enis
        eip = next(e for e in lab.world.all(Eip) if e.instance_id == enis[0].id)
        assert eip.status == "InUse" and eip.instance_type == "NetworkInterface"


def make_plan(lab: Lab, tmp: Path, names: list[str], name: str = "plan.json") -> tuple[plan_mod.Plan, Path]:
    cloud = cloud_for(lab)
    ids = [lab.ids["instances"][n] for n in names]
    p, _ = workflows.make_plan(cloud, REGION, instance_ids=ids, select_all=False, vpc_id=None, tags=None,
                               opts=Options())
    path = tmp / name
    plan_mod.save(p, path)
    return p, path


@pytest.fixture
def lab(guest: FakeGuest) -> Iterator[Lab]:
    with Lab(SEED, executor=guest) as lab:
        guest.world = lab.world
        yield lab


def test_apply_is_refused_while_another_run_holds_the_plan(lab: Lab, tmp_path: Path) -> None:
    p, path = make_plan(lab, tmp_path, ["web-1", "web-2"])
    jpath, lpath = journal.paths_for(path)
    before = snapshot(lab)
    with journal.RunLock(lpath, "apply"):
        a = run(lab, tmp_path, "apply", str(path), "--yes", "--output", "json")
        assert a.returncode == 2, (a.stdout, a.stderr)
        msg = flat(a.stderr)
        assert "another egressctl run holds this plan" in msg and f"apply pid {os.getpid()}" in msg
        assert str(lpath) in msg
        assert a.stdout == ""
        rb = run(lab, tmp_path, "rollback", str(path), "--yes")
        assert rb.returncode == 2 and "another egressctl run holds this plan" in flat(rb.stderr)
        # in-process too: the lock is per open file, so even this process cannot take it twice
        with pytest.raises(journal.Locked):
            workflows.run_engine(cloud_for(lab), p, path, workflows.ApplySettings(poll_interval=0.05), "apply")
        assert not jpath.exists()
        assert snapshot(lab) == before
    # released: the same apply now goes through
    ok = run(lab, tmp_path, "apply", str(path), "--yes", "--output", "json", "--poll-interval", "0.05")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[-1])["exit_code"] == 0
    assert_migrated(lab, [i.instance_id for i in p.instances])


def test_a_stale_lock_file_does_not_block(lab: Lab, tmp_path: Path) -> None:
    """The lock is an flock, not the file's existence: a crashed run's leftover file is no obstacle."""
    p, path = make_plan(lab, tmp_path, ["web-1"])
    _, lpath = journal.paths_for(path)
    lpath.write_text("apply pid 999999 since 2020-01-01T00:00:00")
    ok = run(lab, tmp_path, "apply", str(path), "--yes", "--output", "json", "--poll-interval", "0.05")
    assert ok.returncode == 0, ok.stderr
    assert_migrated(lab, [p.instances[0].instance_id])


def test_two_concurrent_applies(guest: FakeGuest, tmp_path: Path) -> None:
    """A real race: the first apply is caught holding the lock mid-run (SIGSTOP), the second is refused,
    the first finishes, and no instance got a second ENI."""
    with Lab(SEED, executor=guest, latency="realistic", time_scale=0.05, seed=7) as lab:
        guest.world = lab.world
        p, path = make_plan(lab, tmp_path, ["web-1", "web-2"])
        _, lpath = journal.paths_for(path)
        first = subprocess.Popen(argv(lab, "apply", str(path), "--yes", "--output", "json", "--poll-interval",
                                      "0.05"), cwd=tmp_path, env=env_for(lab, tmp_path / "home"),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not (lpath.exists() and f"apply pid {first.pid}" in lpath.read_text()):
                assert first.poll() is None, first.communicate()
                assert time.monotonic() < deadline, "the first apply never took the lock"
                time.sleep(0.01)
            os.kill(first.pid, signal.SIGSTOP)
            try:
                second = run(lab, tmp_path, "apply", str(path), "--yes", "--output", "json")
            finally:
                os.kill(first.pid, signal.SIGCONT)
            assert second.returncode == 2, (second.stdout, second.stderr)
            assert f"apply pid {first.pid}" in flat(second.stderr)
            out, err = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert first.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["exit_code"] == 0
        assert_migrated(lab, [i.instance_id for i in p.instances])


@pytest.mark.parametrize("garbage", [b"this is not a database\n" * 50, os.urandom(8192),
                                     b"SQLite format 3\x00" + b"\xff" * 4080])
def test_a_corrupted_journal_is_refused(lab: Lab, tmp_path: Path, garbage: bytes) -> None:
    _, path = make_plan(lab, tmp_path, ["web-1"])
    jpath, _ = journal.paths_for(path)
    jpath.write_bytes(garbage)
    before = snapshot(lab)
    for args in (["apply", str(path), "--yes", "--output", "json"], ["rollback", str(path), "--yes"],
                 ["status", str(path)]):
        r = run(lab, tmp_path, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        msg = flat(r.stderr)
        assert str(jpath) in msg and "journal" in msg and "Traceback" not in r.stderr
        assert jpath.read_bytes() == garbage, "the evidence was overwritten"
    assert snapshot(lab) == before


def test_a_journal_damaged_after_an_apply_stops_rollback(lab: Lab, tmp_path: Path) -> None:
    p, path = make_plan(lab, tmp_path, ["web-1"])
    ok = run(lab, tmp_path, "apply", str(path), "--yes", "--output", "json", "--poll-interval", "0.05")
    assert ok.returncode == 0, ok.stderr
    jpath, _ = journal.paths_for(path)
    data = bytearray(jpath.read_bytes())
    assert len(data) >= 3 * 4096
    data[4096:len(data)] = b"\xa5" * (len(data) - 4096)  # every page after the first one
    jpath.write_bytes(bytes(data))
    before = snapshot(lab)
    rb = run(lab, tmp_path, "rollback", str(path), "--yes")
    assert rb.returncode == 2, (rb.stdout, rb.stderr)
    assert "journal" in flat(rb.stderr) and "Traceback" not in rb.stderr
    assert snapshot(lab) == before
    assert_migrated(lab, [p.instances[0].instance_id])


def test_a_journal_of_another_plan_is_refused(lab: Lab, tmp_path: Path) -> None:
    _, first = make_plan(lab, tmp_path, ["web-1"], "first.json")
    assert run(lab, tmp_path, "apply", str(first), "--yes", "--poll-interval", "0.05").returncode == 0
    other, second = make_plan(lab, tmp_path, ["web-2"], "second.json")
    jfirst, _ = journal.paths_for(first)
    jsecond, _ = journal.paths_for(second)
    jsecond.write_bytes(jfirst.read_bytes())
    before = snapshot(lab)
    r = run(lab, tmp_path, "apply", str(second), "--yes")
    assert r.returncode == 2
    assert "belongs to plan" in flat(r.stderr) and other.plan_id in flat(r.stderr)
    assert snapshot(lab) == before
