"""Batched waiters: one Describe call checks many resources, so waiting on a fleet does not eat the
rate limit.

A wait is data (kind, id, a success test, a failure test, a timeout) - botocore's waiters, minus
the per-resource polling.  One poller thread serves every kind: each round it asks, per kind, for
*all* pending ids in as few calls as the API allows (100 instances, 100 ENIs, 50 EIPs per call),
stores the answers in a shared cache, and completes the waits whose test passed.  Polling backs off
while a resource stays in its transitional state and restarts fast for new waits; once some waits for
the same thing have ended, a new one is first checked only when the fastest of them had ended (a
check before that would only spend quota).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alibabacloud_ecs20140526 import models as ecs
from alibabacloud_vpc20160428 import models as vpc

from ..inventory import Eip, Instance, Nic, eip_from_sdk, nic_from_sdk
from .client import Cloud
from .errors import AuthError, CloudError

BATCH = {"instance": 100, "nic": 100, "eip": 50}
GONE = object()  # the cache's answer for "asked, and it does not exist"


class Cache:
    """Latest known state per (kind, id), with the time it was read."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def put(self, kind: str, rid: str, obj: Any) -> None:
        with self._lock:
            self._data[(kind, rid)] = (time.monotonic(), obj)

    def get(self, kind: str, rid: str, since: float | None = None) -> Any:
        """The cached object, ``GONE``, or ``None`` when unknown or read before ``since`` (monotonic)."""
        with self._lock:
            hit = self._data.get((kind, rid))
        if hit is None or (since is not None and hit[0] < since):
            return None
        return hit[1]

    def forget(self, kind: str, rid: str) -> None:
        with self._lock:
            self._data.pop((kind, rid), None)


class Fetcher:
    """Batched reads by id; every answer also lands in the cache."""

    def __init__(self, cloud: Cloud, region: str, cache: Cache):
        self.cloud, self.region, self.cache = cloud, region, cache

    def fetch(self, kind: str, ids: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        size = BATCH[kind]
        for i in range(0, len(ids), size):
            out.update(getattr(self, f"_{kind}")(ids[i:i + size]))
        for rid in ids:
            self.cache.put(kind, rid, out.get(rid, GONE))
        return out

    def _instance(self, ids: list[str]) -> dict[str, Instance]:
        body = self.cloud.ecs("DescribeInstances", ecs.DescribeInstancesRequest(
            region_id=self.region, instance_ids=json.dumps(ids), max_results=100))
        return {i.instance_id: Instance.from_sdk(i) for i in (body.instances.instance if body.instances else [])}

    def _nic(self, ids: list[str]) -> dict[str, Nic]:
        body = self.cloud.ecs("DescribeNetworkInterfaces", ecs.DescribeNetworkInterfacesRequest(
            region_id=self.region, network_interface_id=ids, max_results=100))
        sets = body.network_interface_sets.network_interface_set if body.network_interface_sets else []
        return {n.network_interface_id: nic_from_sdk(n) for n in sets or []}

    def _eip(self, ids: list[str]) -> dict[str, Eip]:
        body = self.cloud.vpc("DescribeEipAddresses", vpc.DescribeEipAddressesRequest(
            region_id=self.region, allocation_id=",".join(ids), page_size=100))
        return {e.allocation_id: eip_from_sdk(e) for e in (body.eip_addresses.eip_address if body.eip_addresses
                                                          else []) or []}

    def tool_nics(self, plan_id: str) -> list[Nic]:
        """Every ENI this plan created (by tag): how a crash between create and journal is recovered."""
        out, token = [], None
        while True:
            body = self.cloud.ecs("DescribeNetworkInterfaces", ecs.DescribeNetworkInterfacesRequest(
                region_id=self.region, max_results=500, next_token=token,
                tag=[ecs.DescribeNetworkInterfacesRequestTag(key="egressctl:plan", value=plan_id)]))
            for n in (body.network_interface_sets.network_interface_set if body.network_interface_sets else []) or []:
                nic = nic_from_sdk(n)
                self.cache.put("nic", nic.eni_id, nic)
                out.append(nic)
            token = body.next_token
            if not token:
                return out


@dataclass
class Wait:
    kind: str
    rid: str
    done: Callable[[Any], bool]  # gets the object or GONE
    on_result: Callable[[str, Any], None]  # ("done" | "failed" | "timeout" | "error" | "auth", obj, message or
    # the AuthError: credentials or permissions refused, no point in asking again)
    failed: Callable[[Any], str | None] = lambda obj: None
    timeout_s: float = 600.0
    what: str = ""
    first_check_s: float | None = None  # when to look first (e.g. when a batch is due), instead of the schedule
    started: float = field(default_factory=time.monotonic)
    next_check: float = 0.0
    interval: float = 0.0


LEARN = 32  # completed waits remembered per `what`
LEARN_MIN = 3  # completions needed before they shape the schedule


class Waiters:
    """The poller.  ``poll_interval`` is the longest a wait sleeps between checks; the first check
    comes sooner (a quarter of it) and the interval grows to the cap while nothing changes.  Once
    ``LEARN_MIN`` waits for the same ``what`` have ended, the first check of a new one comes only when
    the fastest of those had ended (the schedule starts from there)."""

    def __init__(self, fetcher: Fetcher, poll_interval: float = 1.0,
                 extra_kinds: dict[str, Callable[[list[str]], dict[str, Any]]] | None = None):
        self.fetcher = fetcher
        self.poll_interval = poll_interval
        self.extra = dict(extra_kinds or {})
        self._waits: list[Wait] = []
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="egressctl-waiters", daemon=True)
        self._last_round: dict[str, float] = {}
        self.min_gap = poll_interval / 2  # a kind is never polled more often than this, however many waits
        self.rounds = 0
        self._took: dict[str, deque[float]] = {}  # what -> how long its last waits took to end "done"

    def start(self) -> Waiters:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=10)

    def add(self, w: Wait) -> None:
        now = time.monotonic()
        w.interval = self.poll_interval / 4
        w.started = now
        with self._cv:
            first = w.interval
            if w.first_check_s is not None:
                first = w.first_check_s
            elif len(took := self._took.get(w.what, ())) >= LEARN_MIN:
                first = max(first, min(took) - self.poll_interval / 8)  # sooner would only spend quota
            w.next_check = now + first
            self._waits.append(w)
            self._cv.notify_all()

    def pending(self) -> int:
        with self._cv:
            return len(self._waits)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self._waits:
                    self._cv.wait()
                if self._stop:
                    return
                now = time.monotonic()
                ready = self._ready_at()
                due_at = min(ready.values())
                if due_at > now:
                    self._cv.wait(due_at - now)
                    continue
                waits = list(self._waits)
                due_kinds = {k for k, t in ready.items() if t <= now}
            self._round(waits, due_kinds)

    def _ready_at(self) -> dict[str, float]:
        """Per kind: when its next batched round may run (its earliest due wait, but not sooner than
        ``min_gap`` after its previous round)."""
        ready: dict[str, float] = {}
        for w in self._waits:
            ready[w.kind] = min(ready.get(w.kind, w.next_check), w.next_check)
        return {k: max(t, self._last_round.get(k, 0.0) + self.min_gap) for k, t in ready.items()}

    def _round(self, waits: list[Wait], due_kinds: set[str]) -> None:
        self.rounds += 1
        now = time.monotonic()
        for kind in due_kinds:
            self._last_round[kind] = now
        answers: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        denied: dict[str, AuthError] = {}
        # a Describe answers every pending id of its kind for the cost of one; an extra kind (the
        # guest: one call per command) is asked only about the waits that are due
        asked = [w for w in waits if w.kind in due_kinds and (w.kind not in self.extra or w.next_check <= now)]
        for kind in due_kinds:
            ids = sorted({w.rid for w in asked if w.kind == kind})
            try:
                answers[kind] = self.extra[kind](ids) if kind in self.extra else self.fetcher.fetch(kind, ids)
            except AuthError as e:
                denied[kind] = e
            except CloudError as e:
                errors[kind] = e.short()
        finished: list[tuple[Wait, str, Any]] = []
        now = time.monotonic()
        for w in asked:
            if w.kind in denied:
                outcome: tuple[str, Any] | None = ("auth", denied[w.kind])
            elif w.kind in errors:
                outcome = ("error", errors[w.kind]) if now - w.started > w.timeout_s else None
            else:
                obj = answers[w.kind].get(w.rid, GONE)
                why = w.failed(obj)
                if why:
                    outcome = ("failed", why)
                elif w.done(obj):
                    outcome = ("done", obj)
                elif now - w.started > w.timeout_s:
                    outcome = ("timeout", f"{w.what or w.kind} not reached after {w.timeout_s:.0f} s")
                else:
                    outcome = None
            if outcome is None:
                took = self._took.get(w.what, ())
                early = min(took) - self.poll_interval / 8 if len(took) >= LEARN_MIN else 0.0
                if now - w.started < early:  # (a wait whose first check came early: a batch to send)
                    w.next_check = w.started + early
                    continue
                w.interval = min(self.poll_interval, max(w.interval * 1.5, self.poll_interval / 4))
                w.next_check = now + w.interval
            else:
                finished.append((w, *outcome))
        if finished:
            with self._cv:
                gone = {id(w) for w, _, _ in finished}
                self._waits = [w for w in self._waits if id(w) not in gone]
                for w, status, _ in finished:
                    if status == "done" and w.what:
                        self._took.setdefault(w.what, deque(maxlen=LEARN)).append(now - w.started)
        for w, status, obj in finished:
            w.on_result(status, obj)
