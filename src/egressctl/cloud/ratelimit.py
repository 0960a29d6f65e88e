"""Client-side rate limits: one token bucket per action, sized by the account's API quotas.

Alibaba counts calls per account, per API, per region, in per-minute windows ("120/60(s)" in Quota
Center; research/aliyun-api.md §1).  A bucket holds one window's quota and refills at quota/window,
so a run may spend a whole minute's quota at once, then goes at the quota's rate.  The defaults are
the published figures where there are any (``QUOTA_SOURCES``) and conservative choices elsewhere; an
account with raised quotas says so with ``--rates FILE``.

When the cloud throttles anyway (other clients share the quota, or the quota is lower than
configured), the bucket waits out the server's ``x-acs-retry-after`` and lowers its rate by a
quarter - once per burst: the many calls a burst refuses together count as one signal - never
below an eighth of the quota; the rate climbs back linearly over ``RECOVER_S`` once throttling
stops, never above the quota.

Callers either ``acquire`` (sleep until a token is theirs) or ``reserve`` (take a token now, get back
how long to wait before using it, without holding a thread: the engine schedules the step for then)
and ``refund`` a token they did not use.  No lock is held while anyone waits.

A reserved token is spent a little later than the bucket assumes, by a varying delay, so two calls
may reach the cloud closer together than the rate allows.  The bucket therefore holds
``headroom_s`` of calls fewer than the window allows: the cloud's own bucket keeps that many spare,
enough to absorb the jitter, at the cost of a couple of seconds once per run.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Quota:
    calls: int
    window_s: float = 60.0

    @property
    def rate(self) -> float:
        return self.calls / self.window_s

    def __str__(self) -> str:
        return f"{self.calls}/{self.window_s:g}(s)"


# The published figures (per account, region and API), and where they were read.
QUOTA_SOURCES: dict[str, str] = {
    "ConvertNatPublicIpToEip": "ECS API reference, ConvertNatPublicIpToEip (research/anchors.md §0)",
    "AssociateEipAddress": "EIP quotas, https://www.alibabacloud.com/help/en/eip/quotas",
    "UnassociateEipAddress": "API Explorer, Vpc 2016-04-28 UnassociateEipAddress (流控信息)",
    "DescribeEipAddresses": "EIP quotas, https://www.alibabacloud.com/help/en/eip/quotas",
    "CreateNetworkInterface": "API Explorer, Ecs 2014-05-26 CreateNetworkInterface (流控信息)",
}

DEFAULT_QUOTAS: dict[str, Quota] = {
    "ConvertNatPublicIpToEip": Quota(1000),
    "AssociateEipAddress": Quota(120),
    "UnassociateEipAddress": Quota(120),
    "DescribeEipAddresses": Quota(600),
    "CreateNetworkInterface": Quota(1500),
    # not published: the same order as the published ECS figures for writes, twice that for reads
    "*Describe": Quota(2000),
    "*List": Quota(2000),
    "*": Quota(1000),
}

_QUOTA_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(?:\(s\)|s)?\s*$")


class RatesError(ValueError):
    pass


def parse_quota(value: Any, where: str) -> Quota:
    """``120/60`` or Quota Center's ``120/60(s)``; a bare number means calls per 60 s."""
    if isinstance(value, bool):
        raise RatesError(f"{where}: expected CALLS/SECONDS such as 120/60, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise RatesError(f"{where}: must be > 0")
        return Quota(value)
    m = _QUOTA_RE.match(str(value)) if isinstance(value, str) else None
    if not m:
        raise RatesError(f"{where}: expected CALLS/SECONDS such as 120/60, got {value!r}")
    calls, window = int(m.group(1)), float(m.group(2))
    if calls <= 0 or window <= 0:
        raise RatesError(f"{where}: calls and seconds must be > 0")
    return Quota(calls, window)


def load_quotas(path: str | Path) -> dict[str, Quota]:
    """A YAML mapping of action (or ``*Describe``, ``*List``, ``*``) to its quota, laid over the
    defaults: ``AssociateEipAddress: 600/60``."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise RatesError(f"{p}: cannot read the rates file: {e.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RatesError(f"{p}: not YAML: {e}") from None
    if not isinstance(data, dict) or not data:
        raise RatesError(f"{p}: expected a mapping of API action to CALLS/SECONDS, e.g. 'AssociateEipAddress: 120/60'")
    out = dict(DEFAULT_QUOTAS)
    for k, v in data.items():
        if not isinstance(k, str) or not re.fullmatch(r"\*|\*?[A-Z][A-Za-z0-9]*", k):
            raise RatesError(f"{p}: {k!r} is not an API action name (or '*Describe', '*List', '*')")
        out[k] = parse_quota(v, f"{p}: {k}")
    return out


def quota_for(quotas: dict[str, Quota], action: str) -> Quota:
    if action in quotas:
        return quotas[action]
    for prefix in ("Describe", "List"):
        if action.startswith(prefix) and f"*{prefix}" in quotas:
            return quotas[f"*{prefix}"]
    return quotas.get("*", Quota(1000))


RECOVER_S = 10.0  # from the floor back to the quota's rate, once throttling stops
BURST_S = 1.0  # throttled answers closer together than this (or the server's retry-after) are one burst


@dataclass
class _Bucket:
    ceiling: float  # the quota's rate, calls/s
    rate: float  # current rate (lowered after throttling)
    tokens: float  # negative: calls already promised to callers who are waiting
    stamp: float
    capacity: float
    burst_until: float = float("-inf")  # throttles before this belong to the last burst


class RateLimiter:
    def __init__(self, quotas: dict[str, Quota] | None = None, clock=time.monotonic, headroom_s: float = 2.0):
        self.quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
        self.headroom_s = headroom_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.waited_s = 0.0  # promised waits, in total
        self.slept_s = 0.0  # of which callers spent asleep in acquire() (a thread held meanwhile)

    def _bucket(self, action: str, now: float) -> _Bucket:
        b = self._buckets.get(action)
        if b is None:
            q = quota_for(self.quotas, action)
            cap = max(1.0, q.calls - q.rate * self.headroom_s)
            b = self._buckets[action] = _Bucket(q.rate, q.rate, cap, now, cap)
        else:
            b.tokens = min(b.capacity, b.tokens + (now - b.stamp) * b.rate)
            if b.rate < b.ceiling and now > b.burst_until:
                b.rate = min(b.ceiling, b.rate + b.ceiling * (now - max(b.stamp, b.burst_until)) / RECOVER_S)
            b.stamp = now
        return b

    def reserve(self, action: str) -> float:
        """Take a token now or promise the next free one; returns how long the caller must wait first."""
        with self._lock:
            now = self._clock()
            b = self._bucket(action, now)
            b.tokens -= 1.0
            wait = 0.0 if b.tokens >= 0 else -b.tokens / b.rate
            self.waited_s += wait
            return wait

    def refund(self, action: str) -> None:
        """A reserved token that was not used (the step found nothing to do)."""
        with self._lock:
            b = self._bucket(action, self._clock())
            b.tokens = min(b.capacity, b.tokens + 1.0)

    def acquire(self, action: str, deadline: float | None = None) -> None:
        wait = self.reserve(action)
        if wait > 0:
            if deadline is not None and self._clock() + wait > deadline:
                self.refund(action)
                raise TimeoutError(f"rate limit for {action}: the next slot is after the call's deadline")
            with self._lock:
                self.slept_s += wait
            time.sleep(wait)

    def throttled(self, action: str, retry_after_s: float | None = None) -> None:
        """The cloud said Throttling: nobody calls this action before the server's hint, and, once per
        burst, the rate drops by a quarter (floor: an eighth of the quota)."""
        with self._lock:
            now = self._clock()
            b = self._bucket(action, now)
            wait = retry_after_s if retry_after_s else 1.0 / b.rate
            if now >= b.burst_until:
                b.rate = max(b.rate * 0.75, b.ceiling / 8)
            b.burst_until = max(b.burst_until, now + max(BURST_S, wait))
            b.tokens = min(b.tokens, -wait * b.rate)

    def current_rate(self, action: str) -> float:
        with self._lock:
            return self._bucket(action, self._clock()).rate

    def capacity(self, action: str) -> float:
        with self._lock:
            return self._bucket(action, self._clock()).capacity
