"""Guest runners: how the rendered routing script reaches a guest and how its result comes back.

The engine sees every runner the same way: ``start(job, token)`` returns a handle at once, and
``poll(handles)`` answers, in one batch, which of them finished (``None`` = still running).  So the
guest step waits and is journaled like any other step.

* Cloud Assistant: ``RunCommand`` (RunShellScript, Base64 content) and batched
  ``DescribeInvocations`` polling by command name; the guest's own output and exit code come back.
* SSH: key-based, host key checked (``ssh -o BatchMode=yes -o StrictHostKeyChecking=yes``).
* print: writes each instance's script to a folder for people who run it by other means; the
  instance then waits at the guest step until they say it ran (``apply --guest-done``).
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alibabacloud_ecs20140526 import models as ecs

from ..cloud import Cloud
from ..cloud.errors import CloudError
from .script import GuestRouting, parse_result, render, render_batch, split_batch

FINAL_OK = ("Success",)
FINAL_BAD = ("Failed", "Timeout", "Invalid", "Error", "Aborted", "Cancelled", "Terminated", "Stopped")


@dataclass
class GuestJob:
    instance_id: str
    routing: GuestRouting | None
    mode: str = "apply"  # apply | check | remove | probe
    host: str = ""  # for SSH
    script: str | None = None  # a ready script (the egress probe) instead of the routing script

    def text(self, encoding: str = "plain") -> str:
        if self.script is not None:
            return self.script
        return render(self.routing, self.mode, encoding=encoding)  # type: ignore[arg-type]


@dataclass
class GuestOutcome:
    ok: bool
    status: str
    exit_code: int | None = None
    message: str = ""
    result: dict[str, Any] | None = None
    manual: bool = False  # print runner: a person has to run it
    output: str = ""
    retry: bool = False  # nothing ran (egressctl lost track): start the step again

    def summary(self) -> str:
        parts = [self.status]
        if self.exit_code is not None:
            parts.append(f"exit {self.exit_code}")
        if self.message:
            parts.append(self.message)
        return ": ".join(parts)


def _result_of(output: str) -> dict[str, Any] | None:
    try:
        res = parse_result(output)
    except Exception:
        return None
    if res is None:
        return None
    if isinstance(res, dict):
        return res
    raw = getattr(res, "raw", None)
    if isinstance(raw, dict):
        return raw
    return {k: v for k, v in vars(res).items() if not k.startswith("_")} if hasattr(res, "__dict__") else None


def _tail(text: str, n: int = 600) -> str:
    text = (text or "").strip()
    return text if len(text) <= n else "..." + text[-n:]


class GuestRunner(ABC):
    name = "guest"

    @abstractmethod
    def start(self, job: GuestJob, token: str) -> str: ...

    @abstractmethod
    def poll(self, handles: list[str]) -> dict[str, GuestOutcome | None]: ...


@dataclass
class _Batch:
    """Guest jobs collected for one RunCommand (the same script text, or routing rows of one mode)."""

    key: tuple[str, str]  # (mode, probe script or "")
    bid: str
    opened: float
    jobs: dict[str, tuple[GuestJob, str]] = field(default_factory=dict)  # instance -> (job, token)
    invoke_of: dict[str, str] = field(default_factory=dict)  # instance -> invoke id, once sent
    errors: dict[str, str] = field(default_factory=dict)  # instance -> why it could not be sent
    sent: bool = False


class CloudAssistantRunner(GuestRunner):
    """One ``RunCommand`` carries the rows of up to ``max_batch`` instances (each guest acts on the row
    whose MAC it has, docs/guest-routing.md), split to fit the CommandContent limit; results come back
    with one ``DescribeInvocations`` per command.  So a fleet of N costs about N/60 RunCommand calls and
    as many polls per round, not N of each.  Jobs wait at most ``window_s`` for companions."""

    name = "cloud-assistant"

    def __init__(self, cloud: Cloud, region: str, command_name: str, timeout_s: int = 180, window_s: float = 0.3,
                 max_batch: int = 100):
        self.cloud, self.region, self.command_name, self.timeout_s = cloud, region, command_name, timeout_s
        self.window_s, self.max_batch = window_s, max_batch
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], _Batch] = {}
        self._batches: dict[str, _Batch] = {}
        self._n = 0

    def start(self, job: GuestJob, token: str) -> str:
        key = (job.mode, job.script or "")
        with self._lock:
            batch = self._open.get(key)
            if batch is None:
                self._n += 1
                batch = _Batch(key, f"{int(time.time() * 1000):x}{self._n}", time.monotonic())
                self._open[key] = batch
                self._batches[batch.bid] = batch
            batch.jobs[job.instance_id] = (job, token)
            full = len(batch.jobs) >= self.max_batch
            if full:
                del self._open[key]
        if full:
            self._send(batch)
        return f"b:{batch.bid}/{job.instance_id}"

    def _due(self) -> list[_Batch]:
        now = time.monotonic()
        with self._lock:
            due = [b for k, b in self._open.items() if now - b.opened >= self.window_s]
            for b in due:
                del self._open[b.key]
        return due

    def _send(self, batch: _Batch) -> None:
        mode, probe = batch.key
        # in instance order: the same instances make the same request (and ClientToken) after a restart
        jobs = sorted(batch.jobs.values(), key=lambda jt: jt[0].instance_id)
        if probe:
            groups = [[j for j, _ in jobs[i:i + self.max_batch]] for i in range(0, len(jobs), self.max_batch)]
        else:
            by_row = {id(j.routing): j for j, _ in jobs}
            groups = [[by_row[id(r)] for r in g] for g in
                      split_batch([j.routing for j, _ in jobs], mode, encoding="gzip")]  # type: ignore[arg-type]
        tokens = {j.instance_id: t for j, t in jobs}
        for group in groups:
            ids = [j.instance_id for j in group]
            script = probe or render_batch([j.routing for j in group], mode, encoding="gzip")  # type: ignore[arg-type]
            token = "egb-" + hashlib.sha256("|".join(sorted(tokens[i] for i in ids)).encode()).hexdigest()[:40]
            try:
                body = self.cloud.ecs("RunCommand", ecs.RunCommandRequest(
                    region_id=self.region, type="RunShellScript",
                    command_content=base64.b64encode(script.encode()).decode(), content_encoding="Base64",
                    instance_id=ids, timeout=self.timeout_s, name=self.command_name,
                    description=f"egressctl guest {mode} ({len(ids)} instances)", client_token=token))
            except CloudError as e:
                for i in ids:
                    batch.errors[i] = f"RunCommand: {e.short()}"
                continue
            for i in ids:
                batch.invoke_of[i] = body.invoke_id
        batch.sent = True

    def poll(self, handles: list[str]) -> dict[str, GuestOutcome | None]:
        for batch in self._due():
            self._send(batch)
        out: dict[str, GuestOutcome | None] = {}
        wanted: dict[str, dict[str, str]] = {}  # invoke id -> instance -> handle
        for h in handles:
            bid, iid = h.removeprefix("b:").split("/", 1)
            batch = self._batches.get(bid)
            if batch is None:
                out[h] = GuestOutcome(False, "Lost", None, "egressctl restarted before the guest answered; running "
                                      "the (idempotent) script again", retry=True)
            elif iid in batch.errors:
                out[h] = GuestOutcome(False, "Error", None, batch.errors[iid])
            elif iid in batch.invoke_of:
                wanted.setdefault(batch.invoke_of[iid], {})[iid] = h
                out[h] = None
            else:
                out[h] = None  # not sent yet
        for invoke_id, members in wanted.items():
            body = self.cloud.ecs("DescribeInvocations", ecs.DescribeInvocationsRequest(
                region_id=self.region, invoke_id=invoke_id, include_output=True, content_encoding="PlainText",
                max_results=1))
            for inv in (body.invocations.invocation if body.invocations else []) or []:
                for row in (inv.invoke_instances.invoke_instance if inv.invoke_instances else []) or []:
                    if row.instance_id in members:
                        out[members[row.instance_id]] = self._outcome(row)
        return out

    @staticmethod
    def _outcome(row: Any) -> GuestOutcome | None:
        status = row.invocation_status or ""
        if status not in FINAL_OK + FINAL_BAD:
            return None
        output = row.output or ""
        result = _result_of(output)
        ok = status in FINAL_OK and (result is None or result.get("status") in ("ok", "changed"))
        message = row.error_info or ""
        if not ok:
            # ErrorInfo only says that the script failed (e.g. "non-zero exit code: 1"); the script's own
            # errors (its result line) or the end of its output say why
            detail = "; ".join(str(e) for e in (result or {}).get("errors") or []) or _tail(output, 300)
            if detail and detail not in message:
                message = f"{message}: {detail}" if message else detail
        if row.error_code:
            message = f"{row.error_code}: {message}"
        return GuestOutcome(ok, status, row.exit_code, message, result, output=output)


class SshRunner(GuestRunner):
    name = "ssh"

    def __init__(self, user: str = "root", key_file: str | None = None, known_hosts: str | None = None,
                 timeout_s: int = 120, workers: int = 16):
        self.user, self.key_file, self.known_hosts, self.timeout_s = user, key_file, known_hosts, timeout_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="egressctl-ssh")
        self._futures: dict[str, Future[GuestOutcome]] = {}
        self._lock = threading.Lock()

    def command(self, host: str) -> list[str]:
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=15"]
        if self.key_file:
            cmd += ["-i", self.key_file, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            cmd += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return [*cmd, f"{self.user}@{host}", "sh -s"]

    def _run(self, job: GuestJob) -> GuestOutcome:
        script = job.text()
        try:
            p = subprocess.run(self.command(job.host), input=script, capture_output=True, text=True,
                               timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            return GuestOutcome(False, "Timeout", None, f"ssh to {job.host} did not finish in {self.timeout_s} s")
        except OSError as e:
            return GuestOutcome(False, "Error", None, f"cannot run ssh: {e.strerror}")
        result = _result_of(p.stdout)
        ok = p.returncode == 0 and (result is None or result.get("status") in ("ok", "changed"))
        msg = "" if ok else _tail(p.stderr or p.stdout)
        return GuestOutcome(ok, "Success" if ok else "Failed", p.returncode, msg, result, output=p.stdout)

    def start(self, job: GuestJob, token: str) -> str:
        if not job.host:
            raise ValueError(f"{job.instance_id}: no address to reach it over SSH")
        handle = f"ssh:{token}:{job.instance_id}"
        with self._lock:
            if handle not in self._futures:
                self._futures[handle] = self._pool.submit(self._run, job)
        return handle

    def poll(self, handles: list[str]) -> dict[str, GuestOutcome | None]:
        out: dict[str, GuestOutcome | None] = {}
        for h in handles:
            with self._lock:
                f = self._futures.get(h)
            if f is None:
                out[h] = GuestOutcome(False, "Error", None, "the SSH run was lost (egressctl restarted); it will be "
                                      "run again")
            else:
                out[h] = f.result() if f.done() else None
        return out


@dataclass
class PrintRunner(GuestRunner):
    folder: Path
    name: str = "print"
    written: dict[str, Path] = field(default_factory=dict)

    def start(self, job: GuestJob, token: str) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{job.instance_id}-{job.mode}.sh"
        path.write_text(job.text())
        path.chmod(0o755)
        self.written[job.instance_id] = path
        return f"print:{path}"

    def poll(self, handles: list[str]) -> dict[str, GuestOutcome | None]:
        return {h: GuestOutcome(False, "Manual", None, f"script written to {h.removeprefix('print:')}: run it on "
                                f"the guest as root ({shlex.quote('sh ' + h.removeprefix('print:'))}), then run "
                                "apply again with --guest-done", manual=True) for h in handles}
