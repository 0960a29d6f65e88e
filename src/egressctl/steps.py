"""The per-instance steps of apply and rollback.  Each step is an *ensure*: look at the cloud, act
only if needed, then wait for the effect (DESIGN §4).  A step returns ``Done``, ``WaitFor`` (the
engine hands it to the batched waiters and runs the step again when the wait ends, so the look
sees the new state), or ``Pause``; it raises ``StepFailed`` for what no retry can fix.

Order within one instance (DESIGN §2.2, minimal downtime): preflight → billing → (stop) → convert →
create ENI → attach → (start) → guest routing → unassociate EIP → associate EIP with the ENI → verify.
Inbound is down only between unassociate and associate.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_vpc20160428 import models as vpc

from .cloud import errors
from .cloud.waiters import GONE
from .guest.runners import GuestJob, GuestOutcome
from .guest.script import GuestRouting
from .inventory import TAG_INSTANCE, TAG_MANAGED, TAG_PLAN, Eip, Instance, Nic

if TYPE_CHECKING:
    from .engine import Engine
    from .journal import Record
    from .plan import InstancePlan


class StepFailed(Exception):
    pass


class NeedLook(Exception):
    """The step needs a resource's state that egressctl does not have (fresh enough): the engine
    looks in the waiters' next batched round and runs the step again, so looks cost a share of one
    Describe call instead of one each."""

    def __init__(self, kind: str, rid: str):
        super().__init__(f"look at {kind} {rid}")
        self.kind, self.rid = kind, rid


MISSING_GRACE_S = 60.0  # Describe answers may lag behind a create: "not found" is final only after this


def _gone_for_good(ctx: Ctx, kind: str, rid: str) -> bool:
    """A resource is missing from a Describe answer: True once that has lasted the grace period;
    until then False, and the cache forgets it so the step's next run looks again."""
    first = ctx.engine.missing_since.setdefault((kind, rid), time.monotonic())
    if time.monotonic() - first > MISSING_GRACE_S:
        return True
    ctx.engine.cache.forget(kind, rid)
    return False


def missing(ctx: Ctx, kind: str, rid: str, what: str) -> errors.CloudError:
    """A resource egressctl knows of is not in a Describe answer: look again later (Busy), until the
    grace period says it is really gone."""
    if _gone_for_good(ctx, kind, rid):
        raise StepFailed(f"{what} no longer exists (not seen for {MISSING_GRACE_S:.0f} s)")
    return errors.Busy("NotVisibleYet", f"{what} is not visible yet (Describe lags behind the change?)")


def absent(ctx: Ctx, kind: str, rid: str) -> bool:
    """True once a resource has been missing from Describe answers for the grace period (really gone);
    raises Busy while it might only be lagging."""
    if _gone_for_good(ctx, kind, rid):
        return True
    raise errors.Busy("NotVisibleYet", f"{kind} {rid} is not in the Describe answer (lag, or gone?)")


def _gone_after(grace: float, message: str) -> Callable[[Any], str | None]:
    """A wait's failure test: the resource has been missing from every answer for ``grace`` seconds."""
    first: list[float] = []

    def failed(obj: Any) -> str | None:
        if obj is not GONE:
            first.clear()
            return None
        if not first:
            first.append(time.monotonic())
        return message if time.monotonic() - first[0] > grace else None

    return failed


@dataclass
class Done:
    note: str = ""


@dataclass
class WaitFor:
    kind: str
    rid: str
    done: Callable[[Any], bool]
    what: str
    timeout_s: float = 600.0
    failed: Callable[[Any], str | None] | None = None
    first_check_s: float | None = None  # when the first look is worth its call (default: the waiters' schedule)


@dataclass
class Pause:
    reason: str


Outcome = Done | WaitFor | Pause


class Ctx:
    """What a step sees: its instance's plan item and journal record, and the cloud through the cache."""

    def __init__(self, engine: Engine, item: InstancePlan, rec: Record):
        self.engine = engine
        self.item = item
        self.rec = rec
        self.iid = item.instance_id
        self.entered = 0.0  # when the engine entered the current step (monotonic)

    # -- journal ------------------------------------------------------------------------------
    def save(self, **data: Any) -> None:
        self.engine.journal.update(self.rec, **data)

    def token(self, step: str) -> str:
        """Deterministic ClientToken: the same request after a crash gets the same answer; a new
        generation (after a rollback) gets a new one."""
        raw = f"{self.engine.plan.plan_id}|{self.iid}|{step}|{self.rec.generation}"
        return "egc-" + hashlib.sha256(raw.encode()).hexdigest()[:40]

    # -- looking ------------------------------------------------------------------------------
    def _get(self, kind: str, rid: str, fresh: bool = False) -> Any:
        obj = self.engine.cache.get(kind, rid, since=self.entered if fresh else None)
        if obj is None:
            raise NeedLook(kind, rid)
        return None if obj is GONE else obj

    def instance(self, fresh: bool = False) -> Instance:
        """``fresh``: read since this step was entered (not what an earlier step saw)."""
        inst = self._get("instance", self.iid, fresh)
        if inst is None:
            raise missing(self, "instance", self.iid, f"instance {self.iid}")
        return inst

    def nic(self, eni_id: str) -> Nic | None:
        return self._get("nic", eni_id)

    def eip(self, allocation_id: str) -> Eip | None:
        return self._get("eip", allocation_id)

    def forget(self) -> None:
        """Drop what we know about this instance's resources (after a Busy answer: look again)."""
        cache = self.engine.cache
        cache.forget("instance", self.iid)
        if self.rec.data.get("eni_id"):
            cache.forget("nic", self.rec.data["eni_id"])
        if self.rec.data.get("allocation_id"):
            cache.forget("eip", self.rec.data["allocation_id"])

    @property
    def cloud(self) -> Any:
        return self.engine.cloud

    @property
    def region(self) -> str:
        return self.engine.plan.region


def _wait_instance(ctx: Ctx, test: Callable[[Instance], bool], what: str, timeout_s: float = 900) -> WaitFor:
    ctx.engine.cache.forget("instance", ctx.iid)
    return WaitFor("instance", ctx.iid, lambda o: o is not GONE and test(o), what, timeout_s,
                   _gone_after(MISSING_GRACE_S, f"instance {ctx.iid} disappeared"))


def _wait_nic(ctx: Ctx, eni_id: str, test: Callable[[Nic], bool], what: str, timeout_s: float = 600,
              gone_ok: bool = False) -> WaitFor:
    ctx.engine.cache.forget("nic", eni_id)
    if gone_ok:
        return WaitFor("nic", eni_id, lambda o: o is GONE or test(o), what, timeout_s)
    return WaitFor("nic", eni_id, lambda o: o is not GONE and test(o), what, timeout_s,
                   _gone_after(MISSING_GRACE_S, f"ENI {eni_id} disappeared"))


def _wait_eip(ctx: Ctx, alloc: str, test: Callable[[Eip], bool], what: str, timeout_s: float = 600) -> WaitFor:
    ctx.engine.cache.forget("eip", alloc)
    return WaitFor("eip", alloc, lambda o: o is not GONE and test(o), what, timeout_s,
                   _gone_after(MISSING_GRACE_S, f"EIP {alloc} disappeared: it must never be released"))


# --- apply ---------------------------------------------------------------------------------------

def preflight(ctx: Ctx) -> Outcome:
    inst = ctx.instance()
    item = ctx.item
    if inst.vpc_id != item.vpc_id or inst.vswitch_id != item.vswitch_id:
        raise StepFailed(f"moved since the plan (now {inst.vpc_id}/{inst.vswitch_id}); make a new plan")
    alloc = ctx.rec.data.get("allocation_id")
    if alloc:
        eip = ctx.eip(alloc)
        if eip is None:
            raise missing(ctx, "eip", alloc, f"its EIP {alloc}")
        if eip.ip != item.public_ip:
            raise StepFailed(f"EIP {alloc} has address {eip.ip}, the plan expected {item.public_ip}")
        return Done("resuming")
    if inst.public_ip:
        if inst.public_ip != item.public_ip:
            raise StepFailed(f"its public IP changed since the plan ({item.public_ip} -> {inst.public_ip})")
    elif inst.eip_ip:
        if inst.eip_ip != item.public_ip:
            raise StepFailed(f"its EIP changed since the plan ({item.public_ip} -> {inst.eip_ip})")
        ctx.save(allocation_id=inst.eip_allocation_id)
    else:
        raise StepFailed(f"it has no public IP any more (the plan expected {item.public_ip})")
    return Done()


def billing(ctx: Ctx) -> Outcome:
    inst = ctx.instance()
    if inst.charge_type == "PostPaid":
        return Done()
    if "instance.charge" not in ctx.rec.data.get("sent", []):
        ctx.save(sent=[*ctx.rec.data.get("sent", []), "instance.charge"])
    try:
        ctx.cloud.ecs("ModifyInstanceChargeType", ecs.ModifyInstanceChargeTypeRequest(
            region_id=ctx.region, instance_ids=f'["{ctx.iid}"]', instance_charge_type="PostPaid", auto_pay=True,
            client_token=ctx.token("billing")))
    except errors.Refused as e:
        if e.code != "InvalidInstanceChargeType.ValueNotSupported":
            raise
    return _wait_instance(ctx, lambda i: i.charge_type == "PostPaid", "billing change to PostPaid")


def _eni_attached(ctx: Ctx) -> bool:
    eni_id = ctx.rec.data.get("eni_id")
    if not eni_id:
        return False
    nic = ctx.nic(eni_id)
    return nic is not None and nic.instance_id == ctx.iid and nic.status == "InUse"


def stop(ctx: Ctx) -> Outcome:
    if _eni_attached(ctx):
        return Done("ENI already attached")
    inst = ctx.instance()
    if inst.status == "Stopped":
        return Done()
    if inst.status == "Running":
        ctx.save(stopped_by_egressctl=True)  # before the act: a crash must not leave it stopped for good
        ctx.cloud.ecs("StopInstance", ecs.StopInstanceRequest(instance_id=ctx.iid), idempotent=False)
    return _wait_instance(ctx, lambda i: i.status == "Stopped", "instance Stopped")


def start(ctx: Ctx) -> Outcome:
    if not ctx.rec.data.get("stopped_by_egressctl"):
        return Done()
    inst = ctx.instance()
    if inst.status == "Running":
        ctx.save(stopped_by_egressctl=False)
        return Done()
    if inst.status == "Stopped":
        ctx.cloud.ecs("StartInstance", ecs.StartInstanceRequest(instance_id=ctx.iid), idempotent=False)
    return _wait_instance(ctx, lambda i: i.status == "Running", "instance Running")


def convert(ctx: Ctx) -> Outcome:
    if ctx.rec.data.get("allocation_id"):
        return Done()
    inst = ctx.instance()
    if inst.eip_allocation_id:
        ctx.save(allocation_id=inst.eip_allocation_id)
        return Done()
    if not inst.public_ip:
        raise StepFailed("it has neither a fixed public IP nor an EIP")
    try:
        ctx.cloud.ecs("ConvertNatPublicIpToEip", ecs.ConvertNatPublicIpToEipRequest(
            region_id=ctx.region, instance_id=ctx.iid), idempotent=False)
    except errors.Refused as e:
        if e.code == "ChargeTypeViolation" and ctx.engine.plan.options.allow_billing_change:
            # the older rule: a subscription instance converts only after becoming pay-as-you-go
            out = billing(ctx)
            return out if isinstance(out, WaitFor) else Pause("billing changed; converting next")
        raise
    return _wait_instance(ctx, lambda i: bool(i.eip_allocation_id), "public IP converted to an EIP")


def create_eni(ctx: Ctx) -> Outcome:
    eni_id = ctx.rec.data.get("eni_id")
    if eni_id:
        if ctx.nic(eni_id) is None:
            raise missing(ctx, "nic", eni_id, f"the ENI egressctl created ({eni_id})")
        return Done()
    adopted = ctx.engine.tool_nic(ctx.iid)
    if adopted is not None:  # created before a crash, answer lost: found by its tags
        ctx.save(eni_id=adopted.eni_id, eni_ip=adopted.ip, eni_mac=adopted.mac)
        return Done("adopted")
    spec = ctx.item.eni
    tags = [ecs.CreateNetworkInterfaceRequestTag(key=k, value=v) for k, v in
            ((TAG_MANAGED, "true"), (TAG_PLAN, ctx.engine.plan.plan_id), (TAG_INSTANCE, ctx.iid))]
    body = ctx.cloud.ecs("CreateNetworkInterface", ecs.CreateNetworkInterfaceRequest(
        region_id=ctx.region, v_switch_id=spec.vswitch_id, security_group_ids=list(spec.security_group_ids),
        network_interface_name=spec.name, description=spec.description, tag=tags,
        client_token=ctx.token("create_eni")))
    if not body.network_interface_id:
        raise StepFailed("CreateNetworkInterface returned no ENI id")
    ctx.save(eni_id=body.network_interface_id, eni_ip=body.private_ip_address, eni_mac=(body.mac_address or "").lower())
    ctx.engine.cache.put("nic", body.network_interface_id, Nic(
        body.network_interface_id, (body.mac_address or "").lower(), body.private_ip_address or "", "Secondary",
        body.status or "Available", "", spec.vswitch_id, tags={TAG_MANAGED: "true", TAG_PLAN: ctx.engine.plan.plan_id,
                                                                 TAG_INSTANCE: ctx.iid}))
    return Done()


def attach(ctx: Ctx) -> Outcome:
    eni_id = ctx.rec.data["eni_id"]
    nic = ctx.nic(eni_id)
    if nic is None:
        raise missing(ctx, "nic", eni_id, f"ENI {eni_id}")
    if nic.instance_id and nic.instance_id != ctx.iid:
        raise StepFailed(f"ENI {eni_id} is attached to {nic.instance_id}")
    if nic.status == "InUse":
        return Done()
    if nic.status == "Available":
        ctx.cloud.ecs("AttachNetworkInterface", ecs.AttachNetworkInterfaceRequest(
            region_id=ctx.region, instance_id=ctx.iid, network_interface_id=eni_id), idempotent=False)
    return _wait_nic(ctx, eni_id, lambda n: n.status == "InUse" and n.instance_id == ctx.iid, "ENI attached (InUse)")


def routing_for(ctx: Ctx) -> GuestRouting:
    data = ctx.rec.data
    net = ipaddress.ip_network(ctx.item.eni.cidr)
    return GuestRouting(mac=data["eni_mac"], ip=data["eni_ip"], prefix=net.prefixlen,
                        gateway=str(net.broadcast_address - 2), eni_id=data["eni_id"], table=ctx.item.guest.table,
                        priority=ctx.item.guest.priority)


def _guest(ctx: Ctx, mode: str, key: str) -> Outcome:
    data = ctx.rec.data
    if data.get(f"{key}_done"):
        return Done()
    if ctx.iid in ctx.engine.guest_done:
        ctx.save(**{f"{key}_done": True, f"{key}_note": "confirmed by the operator (--guest-done)"})
        return Done("confirmed by the operator")
    handle = data.get(f"{key}_handle")
    outcome: GuestOutcome | None = ctx.engine.guest_outcomes.pop(handle, None) if handle else None
    if outcome is not None and outcome.retry:
        ctx.save(**{f"{key}_handle": None})
        handle, outcome = None, None
    if outcome is not None:
        if outcome.ok:
            ctx.save(**{f"{key}_done": True, f"{key}_result": outcome.result or {}})
            return Done(outcome.summary())
        if outcome.manual:
            return Pause(outcome.message)
        # a later run starts the guest step afresh, with a new ClientToken
        ctx.save(**{f"{key}_handle": None, f"{key}_attempt": data.get(f"{key}_attempt", 0) + 1})
        raise StepFailed(f"guest {mode} failed: {outcome.summary()}")
    if not handle:
        job = GuestJob(ctx.iid, routing_for(ctx), mode, host=ctx.engine.guest_host(ctx))
        handle = ctx.engine.runner.start(job, ctx.token(f"{key}-{data.get(f'{key}_attempt', 0)}"))
        ctx.save(**{f"{key}_handle": handle})
    if mode == "apply" and data.get("allocation_id"):
        ctx.engine.prefetch("eip", data["allocation_id"])  # the cut-over starts from its state, next
    # first look when the runner's batch is due to be sent (it is sent from that look)
    return WaitFor("guest", handle, lambda o: o is not None, f"guest {mode}", ctx.engine.guest_timeout_s,
                   first_check_s=getattr(ctx.engine.runner, "window_s", None))


def guest(ctx: Ctx) -> Outcome:
    inst = ctx.instance()
    if inst.status != "Running" and ctx.iid not in ctx.engine.guest_done and ctx.item.guest.runner != "print":
        raise StepFailed(f"instance is {inst.status}; the guest step needs it Running")
    return _guest(ctx, "apply", "guest")


def unassociate(ctx: Ctx) -> Outcome:
    alloc = ctx.rec.data["allocation_id"]
    eni_id = ctx.rec.data["eni_id"]
    eip = ctx.eip(alloc)
    if eip is None:
        raise missing(ctx, "eip", alloc, f"EIP {alloc}")
    if eip.instance_type == "NetworkInterface" and eip.instance_id == eni_id:
        return Done("already on the ENI")
    if eip.status == "Available":
        return Done()
    if eip.status == "InUse" and eip.instance_type == "EcsInstance" and eip.instance_id == ctx.iid:
        if ctx.engine.stopping and not ctx.rec.data.get("cutover_started"):
            return Pause("the run is stopping (error budget spent): stopped before the cut-over, nothing is broken")
        ctx.save(cutover_started=True)
        ctx.cloud.vpc("UnassociateEipAddress", vpc.UnassociateEipAddressRequest(
            region_id=ctx.region, allocation_id=alloc, instance_id=ctx.iid, instance_type="EcsInstance",
            client_token=ctx.token("unassociate")))
        return _wait_eip(ctx, alloc, lambda e: e.status == "Available" or e.instance_id == eni_id,
                         "EIP released from the instance (Available)", 300)
    if eip.status in ("Unassociating", "Associating"):
        return _wait_eip(ctx, alloc, lambda e: e.status in ("Available", "InUse"), f"EIP leaves {eip.status}", 300)
    raise StepFailed(f"EIP {alloc} is {eip.status} on {eip.instance_type} {eip.instance_id}, not on this instance")


def associate(ctx: Ctx) -> Outcome:
    alloc = ctx.rec.data["allocation_id"]
    eni_id, eni_ip = ctx.rec.data["eni_id"], ctx.rec.data["eni_ip"]
    eip = ctx.eip(alloc)
    if eip is None:
        raise missing(ctx, "eip", alloc, f"EIP {alloc}")
    on_eni = eip.instance_type == "NetworkInterface" and eip.instance_id == eni_id
    if on_eni and eip.status == "InUse":
        return Done()
    if eip.status == "Available":
        ctx.cloud.vpc("AssociateEipAddress", vpc.AssociateEipAddressRequest(
            region_id=ctx.region, allocation_id=alloc, instance_id=eni_id, instance_type="NetworkInterface",
            private_ip_address=eni_ip, mode="NAT", client_token=ctx.token("associate")))
    elif not on_eni:
        raise StepFailed(f"EIP {alloc} was taken by {eip.instance_type} {eip.instance_id} during the cut-over")
    return _wait_eip(ctx, alloc, lambda e: e.status == "InUse" and e.instance_id == eni_id, "EIP on the ENI (InUse)",
                     300)


def verify(ctx: Ctx) -> Outcome:
    inst = ctx.instance(fresh=True)
    alloc, eni_id = ctx.rec.data["allocation_id"], ctx.rec.data["eni_id"]
    eip = ctx.eip(alloc)
    problems = []
    if inst.public_ip or inst.eip_ip:
        problems.append(f"the primary NIC still has a public IP ({inst.public_ip or inst.eip_ip})")
    if eip is None or eip.instance_id != eni_id or eip.status != "InUse":
        problems.append(f"EIP {alloc} is not InUse on {eni_id}")
    if problems:
        raise StepFailed("; ".join(problems))
    return Done(f"inbound {eip.ip if eip else '?'} on {eni_id}, egress via SNAT")


APPLY_STEPS: dict[str, Callable[[Ctx], Outcome]] = {
    "preflight": preflight, "billing": billing, "stop": stop, "convert": convert, "create_eni": create_eni,
    "attach": attach, "start": start, "guest": guest, "unassociate": unassociate, "associate": associate,
    "verify": verify,
}


# --- rollback ------------------------------------------------------------------------------------

def r_move_eip_back(ctx: Ctx) -> Outcome:
    """EIP from the ENI back to the instance's primary NIC (the conversion itself cannot be undone)."""
    alloc = ctx.rec.data.get("allocation_id")
    if not alloc:
        return Done("the public IP was never converted: nothing to move")
    eni_id = ctx.rec.data.get("eni_id")
    eip = ctx.eip(alloc)
    if eip is None:
        raise missing(ctx, "eip", alloc, f"EIP {alloc}")
    if eip.instance_type == "EcsInstance" and eip.instance_id == ctx.iid and eip.status == "InUse":
        return Done()
    if eip.status == "InUse" and eip.instance_type == "NetworkInterface" and eip.instance_id == eni_id:
        ctx.cloud.vpc("UnassociateEipAddress", vpc.UnassociateEipAddressRequest(
            region_id=ctx.region, allocation_id=alloc, instance_id=eni_id, instance_type="NetworkInterface",
            client_token=ctx.token("r-unassociate")))
        return _wait_eip(ctx, alloc, lambda e: e.status == "Available", "EIP released from the ENI", 300)
    if eip.status == "Available":
        ctx.cloud.vpc("AssociateEipAddress", vpc.AssociateEipAddressRequest(
            region_id=ctx.region, allocation_id=alloc, instance_id=ctx.iid, instance_type="EcsInstance",
            client_token=ctx.token("r-associate")))
        return _wait_eip(ctx, alloc, lambda e: e.status == "InUse" and e.instance_id == ctx.iid,
                         "EIP back on the instance", 300)
    if eip.status in ("Associating", "Unassociating"):
        return _wait_eip(ctx, alloc, lambda e: e.status in ("Available", "InUse"), f"EIP leaves {eip.status}", 300)
    raise StepFailed(f"EIP {alloc} is {eip.status} on {eip.instance_type} {eip.instance_id}; not moving it")


def r_guest_remove(ctx: Ctx) -> Outcome:
    if not ctx.rec.data.get("eni_mac") or not (ctx.rec.data.get("guest_done") or ctx.rec.data.get("guest_handle")):
        return Done("no guest configuration was made")
    inst = ctx.instance()
    if inst.status != "Running" and ctx.iid not in ctx.engine.guest_done:
        return Done(f"instance is {inst.status}: guest configuration left in place (run `egressctl guest-script "
                    "--mode remove` on it later)")
    return _guest(ctx, "remove", "unguest")


def r_detach(ctx: Ctx) -> Outcome:
    eni_id = ctx.rec.data.get("eni_id")
    if not eni_id:
        return Done("no ENI was created")
    nic = ctx.nic(eni_id)
    if nic is None and absent(ctx, "nic", eni_id):
        return Done("the ENI is gone")
    assert nic is not None
    if nic.status == "Available":
        return Done()
    if not nic.tool_managed:
        raise StepFailed(f"ENI {eni_id} does not carry egressctl's tags: not touching it")
    if nic.status == "InUse" and nic.instance_id == ctx.iid:
        ctx.cloud.ecs("DetachNetworkInterface", ecs.DetachNetworkInterfaceRequest(
            region_id=ctx.region, instance_id=ctx.iid, network_interface_id=eni_id), idempotent=False)
    return _wait_nic(ctx, eni_id, lambda n: n.status == "Available", "ENI detached (Available)")


def r_delete(ctx: Ctx) -> Outcome:
    eni_id = ctx.rec.data.get("eni_id")
    if not eni_id:
        return Done()
    nic = ctx.nic(eni_id)
    if nic is None and (ctx.rec.data.get("eni_delete_sent") or absent(ctx, "nic", eni_id)):
        ctx.save(eni_deleted=True)
        return Done()
    assert nic is not None
    if not nic.tool_managed or nic.tags.get(TAG_INSTANCE) != ctx.iid:
        raise StepFailed(f"ENI {eni_id} is not tagged as egressctl's for {ctx.iid}: not deleting it")
    if nic.status == "Available":
        ctx.save(eni_delete_sent=True)
        ctx.cloud.ecs("DeleteNetworkInterface", ecs.DeleteNetworkInterfaceRequest(
            region_id=ctx.region, network_interface_id=eni_id), idempotent=False)
    return _wait_nic(ctx, eni_id, lambda n: False, "ENI deleted", gone_ok=True)


def r_stop(ctx: Ctx) -> Outcome:
    """A type without ENI hot-plug must be Stopped to detach (only when the plan allowed stopping)."""
    eni_id = ctx.rec.data.get("eni_id")
    nic = ctx.nic(eni_id) if eni_id else None
    if nic is None or nic.instance_id != ctx.iid:
        return Done("no ENI attached")
    inst = ctx.instance()
    if inst.status == "Stopped":
        return Done()
    if inst.status == "Running":
        ctx.save(stopped_by_egressctl=True)
        ctx.cloud.ecs("StopInstance", ecs.StopInstanceRequest(instance_id=ctx.iid), idempotent=False)
    return _wait_instance(ctx, lambda i: i.status == "Stopped", "instance Stopped")


ROLLBACK_STEPS: dict[str, Callable[[Ctx], Outcome]] = {
    "move_eip_back": r_move_eip_back, "guest_remove": r_guest_remove, "stop": r_stop, "detach": r_detach,
    "start": start, "delete_eni": r_delete,
}
