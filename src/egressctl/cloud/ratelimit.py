"""Client-side rate limits: one token bucket per action, adaptive when the cloud throttles.

Alibaba counts calls per account, per API, per region (research/aliyun-api.md §1) and publishes
few numbers, so each bucket starts at a conservative documented rate and reacts to the cloud: a
``Throttled`` answer halves that action's rate for a while (multiplicative decrease); every
successful call earns a little of it back (additive increase), never above the configured ceiling.
Waiting for a token never holds a lock, so many threads share one limiter.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

# calls per second; documented in docs/cli.md ("Rate limits").  ConvertNatPublicIpToEip's
# 1000/60 s is the cloud's published figure; the rest assume the same order for mutating calls
# and twice that for reads.
DEFAULT_RATES: dict[str, float] = {
    "ConvertNatPublicIpToEip": 1000 / 60,
    "ModifyInstanceChargeType": 1000 / 60,
    "CreateNetworkInterface": 1000 / 60,
    "AttachNetworkInterface": 1000 / 60,
    "DetachNetworkInterface": 1000 / 60,
    "DeleteNetworkInterface": 1000 / 60,
    "AssociateEipAddress": 1000 / 60,
    "UnassociateEipAddress": 1000 / 60,
    "RunCommand": 1000 / 60,
    "StopInstance": 1000 / 60,
    "StartInstance": 1000 / 60,
    "*Describe": 2000 / 60,
    "*List": 2000 / 60,
    "*": 1000 / 60,
}


def rate_for(rates: dict[str, float], action: str) -> float:
    if action in rates:
        return rates[action]
    for prefix in ("Describe", "List"):
        if action.startswith(prefix) and f"*{prefix}" in rates:
            return rates[f"*{prefix}"]
    return rates.get("*", 1000 / 60)


@dataclass
class _Bucket:
    ceiling: float  # configured rate, calls/s
    rate: float  # current rate (lowered after throttling)
    tokens: float
    stamp: float
    burst: float


class RateLimiter:
    def __init__(self, rates: dict[str, float] | None = None, burst_s: float = 1.0, clock=time.monotonic):
        self.rates = dict(DEFAULT_RATES if rates is None else rates)
        self.burst_s = burst_s
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def _bucket(self, action: str, now: float) -> _Bucket:
        b = self._buckets.get(action)
        if b is None:
            r = rate_for(self.rates, action)
            burst = max(1.0, r * self.burst_s)
            b = self._buckets[action] = _Bucket(r, r, burst, now, burst)
        return b

    def reserve(self, action: str) -> float:
        """Take a token now or reserve the next one; returns how long the caller must wait first."""
        with self._lock:
            now = self._clock()
            b = self._bucket(action, now)
            b.tokens = min(b.burst, b.tokens + (now - b.stamp) * b.rate)
            b.stamp = now
            b.tokens -= 1.0
            wait = 0.0 if b.tokens >= 0 else -b.tokens / b.rate
            self.waited_s += wait
            return wait

    def acquire(self, action: str, deadline: float | None = None) -> None:
        wait = self.reserve(action)
        if wait > 0:
            if deadline is not None and self._clock() + wait > deadline:
                # give the token back: we will not use it
                with self._lock:
                    self._buckets[action].tokens += 1.0
                raise TimeoutError(f"rate limit for {action}: the next slot is after the call's deadline")
            time.sleep(wait)

    def throttled(self, action: str) -> None:
        """The cloud said Throttling: slow this action down (halve, floor 1 call per 10 s)."""
        with self._lock:
            b = self._bucket(action, self._clock())
            b.rate = max(b.rate / 2, 0.1)
            b.burst = max(1.0, b.rate * self.burst_s)
            b.tokens = min(b.tokens, 0.0)

    def succeeded(self, action: str) -> None:
        with self._lock:
            b = self._buckets.get(action)
            if b is not None and b.rate < b.ceiling:
                b.rate = min(b.ceiling, b.rate + b.ceiling * 0.02)
                b.burst = max(1.0, b.rate * self.burst_s)

    def current_rate(self, action: str) -> float:
        with self._lock:
            return self._bucket(action, self._clock()).rate
