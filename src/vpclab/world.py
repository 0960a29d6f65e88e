"""The emulated cloud's state: typed resources in tables, transitions that complete over time,
derived indexes, change events, and write-through persistence.

One ``World`` per lab.  Every API call and every scenario step runs under ``world.lock`` and ends
with ``commit()``, which persists the objects it touched before the answer leaves the server.
Transitional states (``Attaching``, ``Associating``, ...) are scheduled deadlines in wall-clock
time; ``advance()`` completes the ones that are due (the server also runs a ticker so listeners,
such as the data plane, hear about them without a request).
"""

from __future__ import annotations

import dataclasses
import heapq
import ipaddress
import itertools
import secrets
import string
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from . import errors
from .catalogue import Catalogue
from .clock import Clock, LatencyProfile

T = TypeVar("T", bound="Resource")

_ALNUM = string.ascii_lowercase + string.digits


@dataclasses.dataclass
class Resource:
    """Base of every stored resource.  Subclasses set ``KIND`` and ``PREFIX``."""

    KIND = "resource"
    PREFIX = "res"

    id: str
    region_id: str
    seq: int = 0
    rev: int = 0  # bumped on every change: keys the render cache
    created: float = 0.0
    tags: list[list[str]] = dataclasses.field(default_factory=list)
    # transitions in flight: name -> {"at": epoch seconds, ...data}; several may run at once
    pending: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def tag_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.tags}


# transition name -> handler(world, resource, data)
TRANSITIONS: dict[str, Callable[[World, Resource, dict[str, Any]], None]] = {}
# kind -> class, filled by register()
KINDS: dict[str, type[Resource]] = {}


def transition(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        TRANSITIONS[name] = fn
        return fn
    return deco


def register(cls: type[T]) -> type[T]:
    KINDS[cls.KIND] = cls
    return cls


class World:
    def __init__(self, catalogue: Catalogue, latency: LatencyProfile | None = None, clock: Clock | None = None,
                 account_id: str = "1234567890123456", store: Any = None):
        self.lock = threading.RLock()
        self.catalogue = catalogue
        self.latency = latency or LatencyProfile.load("instant")
        self.clock = clock or Clock()
        self.account_id = account_id
        self.store = store
        self.tables: dict[str, dict[str, Resource]] = defaultdict(dict)
        self._seq = itertools.count(1)
        self._timers: list[tuple[float, int, str, str, str]] = []
        self._timer_seq = itertools.count()
        self._dirty: dict[tuple[str, str], Resource | None] = {}
        self._events: list[tuple[str, Resource]] = []
        self._listeners: list[Callable[[list[tuple[str, str, Resource | None]], list[tuple[str, Resource]]], None]] = []
        self._wake = threading.Condition(self.lock)
        # derived, never persisted: rebuilt by reindex()
        self.used_ips: dict[str, set[str]] = defaultdict(set)  # vswitch id -> private IPs in use
        self.used_public: set[str] = set()
        self.used_macs: set[str] = set()
        self.ip_hint: dict[str, int] = {}  # vswitch id -> offset where the next free-IP search starts
        self._versions: dict[str, int] = defaultdict(int)  # kind -> bumped on add/remove
        self._ordered: dict[tuple[str, str], tuple[int, list[Resource], list[int]]] = {}
        self.render_cache: dict[tuple[str, str], tuple[Any, bytes]] = {}  # (kind, id) -> (key, UTF-8 JSON)
        self.executor: Any = None  # RunCommand executor (vpclab.assistant.Executor) or None
        self.faults: Any = None  # vpclab.faults.Faults or None
        self.public_pools: list[ipaddress.IPv4Network] = [ipaddress.ip_network("203.0.113.0/24"),
                                                          ipaddress.ip_network("198.51.100.0/24")]
        self.reserved_public: set[str] = set()
        self.public_hint = 0  # where the next free public-IP search starts (derived)

    # -- ids --------------------------------------------------------------------------------
    def new_id(self, prefix: str, region_id: str) -> str:
        code = self.catalogue.region_code(region_id)
        n = 20 - len(code)
        while True:
            rid = f"{prefix}-{code}{''.join(_ALNUM[b % 36] for b in secrets.token_bytes(n))}"
            if not any(rid in t for t in self.tables.values()):
                return rid

    def new_mac(self) -> str:
        while True:
            mac = "00:16:3e:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
            if mac not in self.used_macs:
                self.used_macs.add(mac)
                return mac

    def allocate_public_ip(self, wanted: str | None = None) -> str:
        if wanted:
            if wanted in self.used_public:
                raise errors.ApiError("InvalidIpAddress.Duplicated", f"The public IP {wanted} is in use.", 400)
            self.used_public.add(wanted)
            return wanted
        total = sum(max(net.num_addresses - 2, 0) for net in self.public_pools)
        # resume where the last search stopped: allocation stays O(1) amortised for large fleets
        for step in range(total):
            ip = self._public_at((self.public_hint + step) % total)
            if ip not in self.used_public and ip not in self.reserved_public:
                self.used_public.add(ip)
                self.public_hint = (self.public_hint + step + 1) % total
                return ip
        raise errors.ApiError("QuotaExceeded.Eip", "Elastic IP address quota exceeded (the lab's public pool is "
                              "exhausted).", 400)

    def _public_at(self, index: int) -> str:
        for net in self.public_pools:
            hosts = max(net.num_addresses - 2, 0)
            if index < hosts:
                n = int(net.network_address) + 1 + index
                return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
            index -= hosts
        raise IndexError(index)

    # -- tables -----------------------------------------------------------------------------
    def add(self, obj: T) -> T:
        if not obj.seq:
            obj.seq = next(self._seq)
        if not obj.created:
            obj.created = self.clock.now()
        self.tables[obj.KIND][obj.id] = obj
        self._versions[obj.KIND] += 1
        self.touch(obj)
        return obj

    def remove(self, obj: Resource) -> None:
        if self.tables[obj.KIND].pop(obj.id, None) is not None:
            self._versions[obj.KIND] += 1
        self._dirty[(obj.KIND, obj.id)] = None
        self.render_cache.pop((obj.KIND, obj.id), None)

    def touch(self, obj: Resource) -> None:
        obj.rev += 1
        self._dirty[(obj.KIND, obj.id)] = obj

    def ordered(self, cls: type[T], region_id: str) -> tuple[list[T], list[int]]:
        """The region's resources of a kind in creation order, and their seqs (cached until the table changes)."""
        key = (cls.KIND, region_id)
        version = self._versions[cls.KIND]
        hit = self._ordered.get(key)
        if hit is None or hit[0] != version:
            objs = sorted((o for o in self.tables[cls.KIND].values() if o.region_id == region_id),
                          key=lambda o: o.seq)
            hit = (version, objs, [o.seq for o in objs])
            self._ordered[key] = hit
        return hit[1], hit[2]  # type: ignore[return-value]

    def get(self, cls: type[T], rid: str | None, region_id: str | None = None) -> T | None:
        if not rid:
            return None
        obj = self.tables[cls.KIND].get(rid)
        if obj is None or (region_id is not None and obj.region_id != region_id):
            return None
        return obj  # type: ignore[return-value]

    def all(self, cls: type[T], region_id: str | None = None) -> Iterator[T]:
        for obj in self.tables[cls.KIND].values():
            if region_id is None or obj.region_id == region_id:
                yield obj  # type: ignore[misc]

    # -- transitions ------------------------------------------------------------------------
    def schedule(self, obj: Resource, name: str, op: str, **data: Any) -> float:
        """Complete transition ``name`` on ``obj`` after the latency of ``op``; returns the deadline."""
        extra = self.faults.extra_latency(op) * (self.latency.time_scale or 1.0) if self.faults else 0.0
        return self.schedule_at(obj, name, self.clock.now() + self.latency.sample(op) + extra, **data)

    def hidden_after(self, action: str) -> float | None:
        """Describe results lag behind creates (a fault): resources newer than this are not shown."""
        lag = self.faults.describe_lag(action) if self.faults else 0.0
        return self.clock.now() - lag if lag else None

    def schedule_at(self, obj: Resource, name: str, at: float, **data: Any) -> float:
        if name not in TRANSITIONS:
            raise KeyError(name)
        obj.pending[name] = {"at": at, **data}
        heapq.heappush(self._timers, (at, next(self._timer_seq), obj.KIND, obj.id, name))
        self.touch(obj)
        self._wake.notify_all()
        return at

    def cancel(self, obj: Resource, name: str) -> None:
        if obj.pending.pop(name, None) is not None:
            self.touch(obj)

    def advance(self, now: float | None = None) -> int:
        """Complete every transition that is due, in deadline order; returns how many completed."""
        now = self.clock.now() if now is None else now
        done = 0
        while self._timers and self._timers[0][0] <= now:
            at, _, kind, rid, name = heapq.heappop(self._timers)
            obj = self.tables[kind].get(rid)
            data = obj.pending.get(name) if obj is not None else None
            if obj is None or data is None or data["at"] != at:
                continue  # superseded or gone
            del obj.pending[name]
            self.touch(obj)
            TRANSITIONS[name](self, obj, data)
            done += 1
        return done

    def next_deadline(self) -> float | None:
        while self._timers:
            at, _, kind, rid, name = self._timers[0]
            obj = self.tables[kind].get(rid)
            data = obj.pending.get(name) if obj is not None else None
            if data is not None and data["at"] == at:
                return at
            heapq.heappop(self._timers)
        return None

    def wait_for_work(self, timeout: float) -> None:
        """Sleep (releasing the lock) until a new deadline is scheduled or ``timeout`` passes."""
        self._wake.wait(timeout)

    # -- commit, events, persistence --------------------------------------------------------
    def subscribe(self, fn: Callable[[list[tuple[str, str, Resource | None]], list[tuple[str, Resource]]], None]
                  ) -> None:
        """``fn(changes, events)`` runs after every commit, under the lock: keep it quick."""
        self._listeners.append(fn)

    def emit_event(self, name: str, obj: Resource) -> None:
        """A happening that is not a field change (a reboot), delivered with the next commit."""
        self._events.append((name, obj))

    def commit(self) -> None:
        if not self._dirty and not self._events:
            return
        changes = [(k, i, o) for (k, i), o in self._dirty.items()]
        for _, _, o in changes:
            if o is not None:
                o.rev += 1  # a change made after the last touch must not hit a stale render
        events, self._events = self._events, []
        self._dirty = {}
        if self.store is not None and changes:
            self.store.write(changes, next_seq=self.peek_seq())
        for fn in self._listeners:
            fn(changes, events)

    def peek_seq(self) -> int:
        n = next(self._seq)
        self._seq = itertools.count(n)
        return n

    def load(self, objects: list[tuple[str, dict[str, Any]]], next_seq: int) -> None:
        for kind, data in objects:
            cls = KINDS.get(kind)
            if cls is None:
                raise ValueError(f"state holds an unknown resource kind {kind!r}")
            fields = {f.name for f in dataclasses.fields(cls)}
            obj = cls(**{k: v for k, v in data.items() if k in fields})
            self.tables[kind][obj.id] = obj
            self._versions[kind] += 1
            for name, data in obj.pending.items():
                heapq.heappush(self._timers, (data["at"], next(self._timer_seq), kind, obj.id, name))
        self._seq = itertools.count(max(next_seq, 1))
        self.reindex()

    def reindex(self) -> None:
        """Rebuild derived indexes from the tables (after load)."""
        from .resources import reindex_all

        self.used_ips.clear()
        self.used_public.clear()
        self.used_macs.clear()
        reindex_all(self)
