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
import shlex
import subprocess
import threading
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alibabacloud_ecs20140526 import models as ecs

from ..cloud import Cloud
from .script import GuestRouting, parse_result, render

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


class CloudAssistantRunner(GuestRunner):
    name = "cloud-assistant"

    def __init__(self, cloud: Cloud, region: str, command_name: str, timeout_s: int = 180):
        self.cloud, self.region, self.command_name, self.timeout_s = cloud, region, command_name, timeout_s

    def start(self, job: GuestJob, token: str) -> str:
        # gzip+base64 keeps the script under Cloud Assistant's CommandContent size limit
        script = job.text("gzip")
        body = self.cloud.ecs("RunCommand", ecs.RunCommandRequest(
            region_id=self.region, type="RunShellScript", command_content=base64.b64encode(script.encode()).decode(),
            content_encoding="Base64", instance_id=[job.instance_id], timeout=self.timeout_s,
            name=self.command_name, description=f"egressctl guest routing ({job.mode})", client_token=token))
        return f"{body.invoke_id}/{job.instance_id}"

    def poll(self, handles: list[str]) -> dict[str, GuestOutcome | None]:
        wanted = {h.split("/", 1)[0]: h for h in handles}
        out: dict[str, GuestOutcome | None] = {h: None for h in handles}
        seen: set[str] = set()
        token = None
        while True:
            body = self.cloud.ecs("DescribeInvocations", ecs.DescribeInvocationsRequest(
                region_id=self.region, command_name=self.command_name, include_output=True,
                content_encoding="PlainText", max_results=50, next_token=token))
            for inv in (body.invocations.invocation if body.invocations else []) or []:
                handle = wanted.get(inv.invoke_id)
                if handle is None:
                    continue
                seen.add(inv.invoke_id)
                iid = handle.split("/", 1)[1]
                rows = inv.invoke_instances.invoke_instance if inv.invoke_instances else []
                row = next((r for r in rows or [] if r.instance_id == iid), None)
                if row is None:
                    continue
                out[handle] = self._outcome(row)
            token = body.next_token
            if not token or seen >= set(wanted):
                break
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
        if not ok and not message:
            message = _tail(output)
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
