"""Cloud Assistant: RunCommand invocations, their per-instance results, and the agent status.

The command itself runs in a pluggable executor (``world.executor``): the data plane runs it in
the instance's network namespace; tests register their own.  With no executor the invocation
ends ``Failed`` with an error that says so: the lab never fakes a success.
"""

from __future__ import annotations

import base64
import binascii
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import errors
from ..clock import iso_second
from ..world import Resource, World, register, transition
from .instances import Instance

OUTPUT_LIMIT = 24 * 1024  # bytes kept per result; the rest is counted in Dropped
SHELL_TYPES = {"RunShellScript": "linux", "RunBatScript": "windows", "RunPowerShellScript": "windows"}
FINAL = ("Success", "Failed", "Timeout", "Error", "Invalid", "Aborted", "Cancelled", "Terminated")


@dataclass
class CommandRun:
    """What an executor gets: the script and a snapshot of the instance it runs on."""

    invoke_id: str
    instance_id: str
    script: str
    timeout_s: int
    username: str
    working_dir: str
    instance: dict[str, Any]


@dataclass
class CommandResult:
    exit_code: int
    output: str
    timed_out: bool = False
    error_code: str = ""
    error_info: str = ""


class Executor(Protocol):
    def run(self, run: CommandRun) -> CommandResult: ...


@register
@dataclass
class Invocation(Resource):
    KIND = "invocation"
    PREFIX = "t"
    command_id: str = ""
    name: str = ""
    description: str = ""
    command_type: str = "RunShellScript"
    content: str = ""
    timeout: int = 60
    working_dir: str = ""
    username: str = "root"
    repeat_mode: str = "Once"
    parameters: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)


def overall_status(inv: Invocation) -> str:
    """The documented roll-up of per-instance statuses (aliyun-api.md §3.12)."""
    states = [r["InvocationStatus"] for r in inv.results]
    if any(s == "Pending" for s in states):
        return "Pending"
    if any(s == "Running" for s in states):
        return "Running"
    failed = {"Invalid", "Aborted", "Failed", "Timeout", "Error"}
    if all(s in ("Success", "Stopped", "Cancelled", "Terminated") for s in states) and "Success" in states:
        return "Success"
    if all(s in failed | {"Stopped", "Cancelled", "Terminated"} for s in states):
        return "Failed"
    return "PartialFailed"


def instance_snapshot(world: World, inst: Instance) -> dict[str, Any]:
    from .enis import Eni
    from .network import VSwitch, gateway_of

    nics = []
    for eni_id in inst.eni_ids:
        eni = world.get(Eni, eni_id)
        if eni is None:
            continue
        vsw = world.get(VSwitch, eni.vswitch_id)
        nics.append({"eni_id": eni.id, "mac": eni.mac, "ip": eni.primary_ip, "device_index": eni.device_index,
                     "primary": eni.eni_type == "Primary", "status": eni.status,
                     "cidr": vsw.cidr if vsw else "", "gateway": gateway_of(vsw) if vsw else ""})
    return {"id": inst.id, "name": inst.name, "hostname": inst.hostname, "private_ip": inst.private_ip,
            "image_id": inst.image_id, "nics": nics}


def run_command(world: World, region_id: str, *, instance_ids: list[str], command_type: str, content: str,
                content_encoding: str = "PlainText", timeout: int = 60, working_dir: str = "", username: str = "",
                name: str = "", description: str = "", repeat_mode: str = "Once", parameters: str = "") -> Invocation:
    if command_type not in SHELL_TYPES:
        raise errors.ApiError("InvalidCmdType.NotFound", f"The specified command type does not exist. "
                              f"({command_type})", 403)
    if content_encoding.lower() == "base64":
        try:
            content = base64.b64decode(content, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise errors.ApiError("InvalidCommandContent.Malformed", "The CommandContent is not valid Base64.",
                                  400) from None
    elif content_encoding.lower() != "plaintext":
        raise errors.invalid("ContentEncoding", "Valid values: PlainText, Base64.")
    if not content:
        raise errors.missing("CommandContent")
    if len(content.encode()) > 18 * 1024:
        raise errors.ApiError("CmdContent.ExceedLimit", "The command content exceeds 18 KB.", 403)
    if not instance_ids:
        raise errors.missing("InstanceId")
    if len(instance_ids) > 100:
        raise errors.ApiError("InstanceIds.ExceedLimit", "At most 100 instances per invocation.", 403)
    if repeat_mode != "Once":
        raise errors.ApiError("InvalidParam.RepeatMode", "The lab runs commands with RepeatMode=Once only.", 403)
    if not 10 <= timeout <= 86400:
        raise errors.invalid("Timeout", "Valid values: 10 to 86400 seconds.")
    insts = []
    for iid in instance_ids:
        inst = world.get(Instance, iid, region_id)
        if inst is None:
            raise errors.ApiError("InvalidInstance.NotFound", f"The specified instance does not exist. ({iid})", 404)
        insts.append(inst)
    now = iso_second(world.clock.now())
    inv = Invocation(id=world.new_id("t", region_id), region_id=region_id,
                     command_id=world.new_id("c", region_id), name=name or "egress-command", description=description,
                     command_type=command_type, content=content, timeout=timeout,
                     working_dir=working_dir or ("/root" if SHELL_TYPES[command_type] == "linux" else "C:\\Windows"),
                     username=username or "root", repeat_mode=repeat_mode, parameters=parameters)
    for inst in insts:
        inv.results.append({"InstanceId": inst.id, "InvocationStatus": "Pending", "Output": "", "ExitCode": 0,
                            "ErrorCode": "", "ErrorInfo": "", "StartTime": "", "FinishedTime": "", "Dropped": 0,
                            "Repeats": 0, "CreationTime": now, "UpdateTime": now})
    world.add(inv)
    world.schedule(inv, "command.deliver", "command.deliver")
    return inv


def _finish(world: World, inv: Invocation, res: dict[str, Any], status: str, *, exit_code: int = 0,
            output: str = "", error_code: str = "", error_info: str = "") -> None:
    raw = output.encode("utf-8", "replace")
    now = iso_second(world.clock.now())
    res.update({"InvocationStatus": status, "ExitCode": exit_code, "Output": raw[:OUTPUT_LIMIT].decode("utf-8",
                "ignore"), "Dropped": max(len(raw) - OUTPUT_LIMIT, 0), "ErrorCode": error_code,
                "ErrorInfo": error_info, "FinishedTime": now, "UpdateTime": now, "Repeats": 1})
    if not res["StartTime"]:
        res["StartTime"] = now
    world.touch(inv)


@transition("command.deliver")
def _deliver(world: World, inv: Invocation, data: dict) -> None:
    for res in inv.results:
        if res["InvocationStatus"] != "Pending":
            continue
        inst = world.get(Instance, res["InstanceId"])
        if inst is None:
            _finish(world, inv, res, "Invalid", error_code="InstanceReleased",
                    error_info="The instance was released.")
            continue
        image = world.catalogue.images.get(inst.image_id)
        if image is not None and image.os_type != SHELL_TYPES[inv.command_type]:
            _finish(world, inv, res, "Invalid", error_code="CommandNotApplicable",
                    error_info=f"{inv.command_type} cannot run on a {image.os_type} instance.")
            continue
        if inst.status != "Running":
            _finish(world, inv, res, "Invalid", error_code="InstanceNotRunning",
                    error_info=f"The instance is {inst.status}.")
            continue
        if not inst.cloud_assistant:
            _finish(world, inv, res, "Invalid", error_code="ClientNotRunning",
                    error_info="The Cloud Assistant agent on the instance is not running (no heartbeat).")
            continue
        if world.executor is None:
            _finish(world, inv, res, "Failed", exit_code=-1, error_code="ExecutionException",
                    error_info="vpclab has no command executor: the lab runs without a data plane, so the command "
                               "was not run on any guest.")
            continue
        res["InvocationStatus"] = "Running"
        res["StartTime"] = iso_second(world.clock.now())
        run = CommandRun(invoke_id=inv.id, instance_id=inst.id, script=inv.content, timeout_s=inv.timeout,
                         username=inv.username, working_dir=inv.working_dir,
                         instance=instance_snapshot(world, inst))
        _pool(world).submit(_execute, world, world.executor, inv.id, inst.id, run)
    world.touch(inv)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(world: World) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(id(world))
        if pool is None:
            pool = _pools[id(world)] = ThreadPoolExecutor(max_workers=32, thread_name_prefix="vpclab-assistant")
        return pool


def shutdown(world: World) -> None:
    with _pools_lock:
        pool = _pools.pop(id(world), None)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _execute(world: World, executor: Executor, invoke_id: str, instance_id: str, run: CommandRun) -> None:
    try:
        result = executor.run(run)
    except Exception as e:  # an executor bug must still end the invocation
        result = CommandResult(exit_code=-1, output="", error_code="ExecutionException",
                               error_info=f"the lab's executor failed: {type(e).__name__}: {e}")
    with world.lock:
        inv = world.get(Invocation, invoke_id)
        if inv is None:
            return
        res = next((r for r in inv.results if r["InstanceId"] == instance_id), None)
        if res is None or res["InvocationStatus"] != "Running":
            return
        if result.timed_out:
            _finish(world, inv, res, "Timeout", exit_code=result.exit_code, output=result.output,
                    error_code="ExecutionTimeout", error_info=f"The command timed out after {run.timeout_s} s.")
        elif result.error_code:
            _finish(world, inv, res, "Failed", exit_code=result.exit_code, output=result.output,
                    error_code=result.error_code, error_info=result.error_info)
        elif result.exit_code != 0:
            _finish(world, inv, res, "Failed", exit_code=result.exit_code, output=result.output,
                    error_code="ExitCodeNonzero",
                    error_info=f"the process exited with a non-zero exit code: {result.exit_code}")
        else:
            _finish(world, inv, res, "Success", exit_code=0, output=result.output)
        world.commit()


def interrupt_running(world: World) -> None:
    """After a restart nothing runs any more: end what was Running, as an interrupted execution."""
    for inv in world.all(Invocation):
        for res in inv.results:
            if res["InvocationStatus"] in ("Running",):
                _finish(world, inv, res, "Failed", exit_code=-1, error_code="ExecutionInterrupted",
                        error_info="The lab restarted while the command was running.")


def reindex(world: World) -> None:
    interrupt_running(world)
