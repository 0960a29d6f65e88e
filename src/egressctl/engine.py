"""The apply/rollback engine: many instances concurrently, each through its steps in order.

Workers run step functions (the API calls); waits go to the batched waiters and come back as events;
one coordinator thread owns the schedule (admission, retries, the error budget).  Nothing waits by
holding a thread, so thousands of instances cost a few threads, and polling costs a few Describe
calls per round whatever the fleet size.

Failure handling per step:
* ``Busy`` (the resource is mid-transition, or a competing request holds it): forget what we knew,
  look again after a jittered backoff, and decide again (the ensure loop).
* ``Ambiguous`` (a transport failure on a request without a ClientToken): same: look, then decide.
* ``Throttled``/``Transient`` that outlived the cloud layer's retries: try the step again later.
* ``NotFound``/``Refused``/``StepFailed``: that instance fails; the run goes on.  More failures than
  ``max_failures`` and the run stops starting instances; the ones in flight stop at a safe point
  (before the conversion, or before the cut-over) or finish what they started.
* ``AuthError``: credentials or permission - every instance stops at once (no retry storm).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .cloud import Cloud, errors
from .cloud.waiters import Cache, Fetcher, Wait, Waiters
from .guest.runners import GuestOutcome, GuestRunner
from .inventory import TAG_INSTANCE, Nic
from .journal import Journal, Record
from .plan import InstancePlan, Plan
from .steps import APPLY_STEPS, ROLLBACK_STEPS, Ctx, Done, NeedLook, Pause, StepFailed, WaitFor

log = logging.getLogger("egressctl.engine")

MAX_STEP_RETRIES = 40
PAUSE_BEFORE = ("convert", "unassociate")  # safe points when the run is stopping

# The rate-limited calls each step makes (at most once each).  A step is started only when its
# tokens are due, so no worker thread sleeps in the rate limiter while others could run.  The EIP
# move reserves both halves at once: once the EIP leaves the instance, the call that puts it on the
# ENI never queues behind other instances (inbound is down only for the move itself).
STEP_CALLS: dict[str, dict[str, tuple[str, ...]]] = {
    "apply": {"billing": ("ModifyInstanceChargeType",), "stop": ("StopInstance",),
              "convert": ("ConvertNatPublicIpToEip",), "create_eni": ("CreateNetworkInterface",),
              "attach": ("AttachNetworkInterface",), "start": ("StartInstance",),
              "unassociate": ("UnassociateEipAddress", "AssociateEipAddress"), "associate": ("AssociateEipAddress",)},
    "rollback": {"move_eip_back": ("UnassociateEipAddress", "AssociateEipAddress"), "stop": ("StopInstance",),
                 "detach": ("DetachNetworkInterface",), "start": ("StartInstance",),
                 "delete_eni": ("DeleteNetworkInterface",)},
}
CRITICAL_PATH_S = 60.0  # generous per-instance time through the steps (realistic profile: ~15 s)


@dataclass
class EngineOptions:
    parallel: int | None = None  # None = derived from the rate limits (Little's law)
    max_failures: int = 0
    poll_interval: float = 1.0
    workers: int = 64
    guest_timeout_s: float = 900.0
    retry_base_s: float = 0.5
    retry_cap_s: float = 20.0


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)
    not_started: list[str] = field(default_factory=list)
    aborted: str = ""
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.paused and not self.not_started and not self.aborted


def sequence(item: InstancePlan, mode: str) -> list[str]:
    if mode == "apply":
        return list(item.steps)
    seq = ["move_eip_back", "guest_remove"]
    if item.stop_for_attach:
        seq.append("stop")
    seq.append("detach")
    if item.stop_for_attach:
        seq.append("start")
    seq.append("delete_eni")
    return seq


class Engine:
    def __init__(self, cloud: Cloud, plan: Plan, journal: Journal, runner: GuestRunner, options: EngineOptions,
                 mode: str = "apply", on_event: Callable[[dict[str, Any]], None] | None = None,
                 guest_done: set[str] | None = None, ssh_hosts: dict[str, str] | None = None):
        self.cloud, self.plan, self.journal, self.runner, self.opts = cloud, plan, journal, runner, options
        self.mode = mode
        self.steps = APPLY_STEPS if mode == "apply" else ROLLBACK_STEPS
        self.on_event = on_event or (lambda e: None)
        self.guest_done = set(guest_done or ())
        self.ssh_hosts = dict(ssh_hosts or {})
        self.guest_timeout_s = options.guest_timeout_s
        self.cache = Cache()
        self.fetcher = Fetcher(cloud, plan.region, self.cache)
        self.guest_outcomes: dict[str, GuestOutcome] = {}
        self.missing_since: dict[tuple[str, str], float] = {}  # resources not (yet) in Describe answers
        self.waiters = Waiters(self.fetcher, options.poll_interval, {"guest": self._poll_guest})
        self.stopping = False
        self._events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        self._timers: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self._tool_nics: dict[str, Nic] = {}
        self._rng = random.Random()
        self._prepaid: dict[str, list[str]] = {}  # instance -> actions whose tokens it holds

    # -- helpers the steps use ---------------------------------------------------------------------
    def tool_nic(self, instance_id: str) -> Nic | None:
        return self._tool_nics.get(instance_id)

    def prefetch(self, kind: str, rid: str) -> None:
        """Have the waiters' next round of ``kind`` read ``rid`` too (a share of a call it makes anyway),
        so a later step finds it in the cache instead of waiting for a look of its own."""
        if self.cache.get(kind, rid) is None:
            self.waiters.add(Wait(kind, rid, lambda obj: True, lambda status, obj: None, what="prefetch"))

    def guest_host(self, ctx: Ctx) -> str:
        return self.ssh_hosts.get(ctx.iid, ctx.item.public_ip)

    def _poll_guest(self, handles: list[str]) -> dict[str, Any]:
        answers = self.runner.poll(handles)
        for h, outcome in answers.items():
            if outcome is not None:
                self.guest_outcomes[h] = outcome
        return answers

    def _emit(self, kind: str, iid: str, step: str = "", **extra: Any) -> None:
        self.on_event({"event": kind, "instance_id": iid, "step": step, "ts": round(time.time(), 3), **extra})

    def parallel(self, n: int, seqs: list[list[str]] | None = None) -> int:
        """Instances in flight.  Little's law: in flight = throughput x time in the system, where the
        throughput is the slowest quota among the calls the run makes (its whole window may go at
        once, hence its capacity on top) and the time is a generous critical path.  More would only
        queue for tokens; fewer would leave that quota idle."""
        if self.opts.parallel:
            return max(1, self.opts.parallel)
        calls = STEP_CALLS[self.mode]
        actions = {a for seq in (seqs or [list(calls)]) for step in seq for a in calls.get(step, ())}
        lim = self.cloud.limiter
        need = min((lim.capacity(a) + lim.current_rate(a) * CRITICAL_PATH_S for a in actions), default=float(n))
        return max(1, min(n, int(need), 2000))

    # -- the run -------------------------------------------------------------------------------------
    def run(self, instance_ids: list[str]) -> RunSummary:
        t0 = time.monotonic()
        summary = RunSummary()
        items = {i.instance_id: i for i in self.plan.instances if i.instance_id in set(instance_ids)}
        self.journal.ensure(list(items))
        records = {iid: self.journal.get(iid) for iid in items}
        todo = [iid for iid in instance_ids if iid in items and records[iid] is not None and
                records[iid].status not in (("done",) if self.mode == "apply" else ("rolled_back",))]
        summary.done = [iid for iid in instance_ids if iid in items and iid not in todo]
        if not todo:
            summary.wall_s = time.monotonic() - t0
            return summary
        self._prefetch([records[i] for i in todo])  # type: ignore[misc]
        runs: dict[str, tuple[Ctx, list[str]]] = {}
        for iid in todo:
            rec = records[iid]
            assert rec is not None
            if self.mode == "rollback" and rec.status != "rolling_back":
                self.journal.update(rec, status="rolling_back", error="")
            runs[iid] = (Ctx(self, items[iid], rec), sequence(items[iid], self.mode))
        position = {iid: self._resume_at(runs[iid][0], runs[iid][1]) for iid in todo}
        attempts: dict[str, int] = {}
        pending = list(todo)
        pending.reverse()
        in_flight: set[str] = set()
        failures = 0
        limit = self.parallel(len(todo), [runs[i][1] for i in todo])
        self.waiters.start()
        pool = ThreadPoolExecutor(max_workers=self.opts.workers, thread_name_prefix="egressctl-step")

        def enter(ctx: Ctx, step: str) -> None:
            """Start a step when the tokens for its calls are due (a timer, not a sleeping thread)."""
            ctx.entered = time.monotonic()
            held = self._prepaid.setdefault(ctx.iid, [])
            wait = 0.0
            for action in STEP_CALLS[self.mode].get(step, ()):
                if action not in held:
                    wait = max(wait, self.cloud.limiter.reserve(action))
                    held.append(action)
            if wait > 0.001:
                self._later(wait, ctx.iid, "run")
            else:
                pool.submit(self._run_step, ctx, step)

        def leave(iid: str) -> None:
            in_flight.discard(iid)
            for action in self._prepaid.pop(iid, []):
                self.cloud.limiter.refund(action)

        try:
            while pending or in_flight:
                while pending and len(in_flight) < limit and not self.stopping:
                    iid = pending.pop()
                    in_flight.add(iid)
                    self._emit("instance_started", iid)
                    enter(runs[iid][0], runs[iid][1][position[iid]])
                if not in_flight:
                    break
                kind, iid, payload = self._next_event()
                ctx, seq = runs[iid]
                step = seq[position[iid]]
                if kind == "retry":
                    enter(ctx, step)
                    continue
                if kind == "run":
                    pool.submit(self._run_step, ctx, step)
                    continue
                if kind == "waited":
                    status, detail = payload
                    if status == "auth":  # the credentials were refused while it waited: abort, below
                        self._events.put(("outcome", iid, detail))
                        continue
                    if status == "done":
                        pool.submit(self._run_step, ctx, step)
                    else:
                        failures += 1
                        self._fail(ctx, step, f"waiting for {detail}" if status == "timeout" else str(detail),
                                   summary)
                        leave(iid)
                        self._budget(failures, iid, step)
                    continue
                outcome = payload
                if isinstance(outcome, Done):
                    attempts.pop(iid, None)
                    self.journal.event(iid, step, "done", note=outcome.note)
                    self._emit("step_done", iid, step, note=outcome.note)
                    position[iid] += 1
                    if position[iid] >= len(seq):
                        if self.mode == "rollback":
                            # back to "EIP on the primary NIC": keep only what still exists (the EIP), and
                            # move to a new generation so a later apply sends fresh ClientTokens
                            keep = {k: ctx.rec.data[k] for k in ("allocation_id",) if k in ctx.rec.data}
                            ctx.rec.data = keep
                            self.journal.update(ctx.rec, status="rolled_back", step="", error="",
                                                generation=ctx.rec.generation + 1)
                        else:
                            self.journal.update(ctx.rec, status="done", step="", error="")
                        summary.done.append(iid)
                        leave(iid)
                        self._emit("instance_done", iid)
                        continue
                    nxt = seq[position[iid]]
                    if self.stopping and self.mode == "apply" and nxt in PAUSE_BEFORE and \
                            not ctx.rec.data.get("cutover_started"):
                        self._pause(ctx, nxt, "the run is stopping (error budget spent): paused at a safe point "
                                    f"before {nxt}", summary)
                        leave(iid)
                        continue
                    enter(ctx, nxt)
                elif isinstance(outcome, WaitFor):
                    self._emit("waiting", iid, step, what=outcome.what)
                    self.waiters.add(Wait(outcome.kind, outcome.rid, outcome.done,
                                          lambda status, obj, iid=iid: self._events.put(("waited", iid,
                                                                                         (status, obj))),
                                          outcome.failed or (lambda o: None), outcome.timeout_s, outcome.what,
                                          outcome.first_check_s))
                elif isinstance(outcome, Pause):
                    if self.mode == "apply" and step == "convert" and "billing changed" in outcome.reason:
                        enter(ctx, step)
                        continue
                    self._pause(ctx, step, outcome.reason, summary)
                    leave(iid)
                elif isinstance(outcome, errors.AuthError):
                    if summary.aborted:  # another instance's refusal already aborted the run
                        continue
                    summary.aborted = outcome.short()
                    self.stopping = True
                    self._fail(ctx, step, outcome.short(), summary)
                    leave(iid)
                    for other in list(in_flight):
                        other_ctx = runs[other][0]
                        self._fail(other_ctx, runs[other][1][position[other]], "aborted: " + outcome.short(),
                                   summary)
                        leave(other)
                    # nothing new starts (stopping); what never started is reported as such
                elif isinstance(outcome, Exception):
                    retry_after = self._retry_delay(ctx, step, outcome, attempts)
                    if retry_after is None:
                        failures += 1
                        self._fail(ctx, step, _describe(outcome), summary)
                        leave(iid)
                        self._budget(failures, iid, step)
                    else:
                        self._later(retry_after, iid, "retry")
        finally:
            self.waiters.stop()
            pool.shutdown(wait=True)
        summary.not_started = list(reversed(pending))
        summary.wall_s = time.monotonic() - t0
        return summary

    def _budget(self, failures: int, iid: str, step: str) -> None:
        if failures > self.opts.max_failures and not self.stopping:
            self.stopping = True
            self._emit("stopping", iid, step, failures=failures)

    def _resume_at(self, ctx: Ctx, seq: list[str]) -> int:
        """Resume a crashed or failed instance at its journaled step; earlier steps are ensures anyway."""
        step = ctx.rec.step
        if step in seq and ctx.rec.status in ("running", "failed", "paused", "rolling_back"):
            return 0 if step in ("preflight",) else seq.index(step)
        return 0

    def _prefetch(self, recs: list[Record]) -> None:
        """One batched look at everything the run will touch (also finds ENIs created before a crash)."""
        ids = [r.instance_id for r in recs]
        self.fetcher.fetch("instance", ids)
        for nic in self.fetcher.tool_nics(self.plan.plan_id):
            owner = nic.tags.get(TAG_INSTANCE, "")
            if owner:
                self._tool_nics[owner] = nic
        enis = [r.data["eni_id"] for r in recs if r.data.get("eni_id")]
        if enis:
            self.fetcher.fetch("nic", enis)
        allocs = sorted({r.data["allocation_id"] for r in recs if r.data.get("allocation_id")} |
                        {i.eip_allocation_id for i in self.plan.instances if i.eip_allocation_id and
                         i.instance_id in set(ids)})
        if allocs:
            self.fetcher.fetch("eip", allocs)

    def _run_step(self, ctx: Ctx, step: str) -> None:
        self.cloud.prepay(self._prepaid.get(ctx.iid) or [])
        try:
            if ctx.rec.step != step or ctx.rec.status not in ("running", "rolling_back"):
                self.journal.update(ctx.rec, status="running" if self.mode == "apply" else "rolling_back",
                                    step=step)
                self._emit("step_started", ctx.iid, step)
            outcome: Any = self.steps[step](ctx)
        except NeedLook as e:
            outcome = WaitFor(e.kind, e.rid, lambda obj: True, str(e))
        except (errors.CloudError, StepFailed) as e:
            outcome = e
        except Exception as e:  # a bug in a step: that instance fails, loudly, the run goes on
            log.exception("step %s of %s", step, ctx.iid)
            outcome = StepFailed(f"internal error in step {step}: {type(e).__name__}: {e}")
        finally:
            self.cloud.prepay([])
        self._events.put(("outcome", ctx.iid, outcome))

    def _retry_delay(self, ctx: Ctx, step: str, err: Exception, attempts: dict[str, int]) -> float | None:
        if isinstance(err, (StepFailed, errors.NotFound, errors.Refused, errors.AuthError)):
            return None
        n = attempts[ctx.iid] = attempts.get(ctx.iid, 0) + 1
        if n > MAX_STEP_RETRIES:
            return None
        if isinstance(err, (errors.Busy, errors.Ambiguous)):
            ctx.forget()
        self.journal.event(ctx.iid, step, "retry", code=getattr(err, "code", type(err).__name__), attempt=n)
        self._emit("retry", ctx.iid, step, code=getattr(err, "code", ""), attempt=n)
        cap = min(self.opts.retry_cap_s, self.opts.retry_base_s * 2 ** min(n - 1, 10))
        return self._rng.uniform(cap / 2, cap)

    def _later(self, delay: float, iid: str, kind: str) -> None:
        """``retry``: enter the step again (reserving tokens); ``run``: its tokens are due, run it."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), iid, kind))

    def _next_event(self) -> tuple[str, str, Any]:
        while True:
            now = time.monotonic()
            if self._timers and self._timers[0][0] <= now:
                _, _, iid, kind = heapq.heappop(self._timers)
                return (kind, iid, None)
            timeout = (self._timers[0][0] - now) if self._timers else None
            try:
                return self._events.get(timeout=timeout)
            except queue.Empty:
                continue

    def _fail(self, ctx: Ctx, step: str, message: str, summary: RunSummary) -> None:
        self.journal.update(ctx.rec, status="failed", step=step, error=message)
        self.journal.event(ctx.iid, step, "failed", error=message)
        summary.failed[ctx.iid] = f"{step}: {message}"
        self._emit("instance_failed", ctx.iid, step, error=message)

    def _pause(self, ctx: Ctx, step: str, reason: str, summary: RunSummary) -> None:
        self.journal.update(ctx.rec, status="paused", step=step, error=reason)
        self.journal.event(ctx.iid, step, "paused", reason=reason)
        summary.paused[ctx.iid] = f"{step}: {reason}"
        self._emit("instance_paused", ctx.iid, step, reason=reason)


def _describe(err: Exception) -> str:
    if isinstance(err, errors.CloudError):
        return f"{err.action}: {err.short()}" if err.action else err.short()
    return str(err)
