"""API throttling per access key, region and action: token buckets refilled continuously.

The cloud counts per account, per API, per region, in per-minute windows, and publishes few
numbers (aliyun-api.md §1).  A bucket of ``limit`` tokens refilled at ``limit/window`` per second
has the same long-run rate without the window-edge bursts; the choice is recorded in
docs/emulator.md.  Windows scale with ``--time-scale`` like every other duration.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Defaults (docs/emulator.md): the published per-account quotas where there are any - ECS
# ConvertNatPublicIpToEip (research/anchors.md §0) and CreateNetworkInterface (API Explorer), EIP
# quotas page (Allocate/Associate/UnassociateEipAddress 120, DescribeEipAddresses and
# ReleaseEipAddress 600) - and the lab's choice elsewhere, generous for reads.
DEFAULT_LIMITS: dict[str, int] = {
    "ConvertNatPublicIpToEip": 1000,
    "CreateNetworkInterface": 1500,
    "AllocateEipAddress": 120,
    "AssociateEipAddress": 120,
    "UnassociateEipAddress": 120,
    "DescribeEipAddresses": 600,
    "ReleaseEipAddress": 600,
    "*Describe": 6000,
    "*List": 6000,
    "*": 1000,
}
WINDOW_S = 60.0


@dataclass
class Bucket:
    tokens: float
    stamp: float


class Throttle:
    def __init__(self, limits: dict[str, int] | None = None, window_s: float = WINDOW_S, time_scale: float = 1.0,
                 enabled: bool = True):
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.window = window_s * (time_scale if time_scale > 0 else 1.0)
        self.enabled = enabled
        self._buckets: dict[tuple[str, str, str], Bucket] = {}
        self._lock = threading.Lock()
        self.denied = 0

    @classmethod
    def load(cls, spec: str, time_scale: float = 1.0) -> Throttle:
        """``off``, ``default`` or a YAML file ``{window_s: 60, limits: {Action: n, '*Describe': n, '*': n}}``."""
        if spec == "off":
            return cls(enabled=False)
        if spec == "default":
            return cls(time_scale=time_scale)
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"throttle profile {spec!r}: no such file")
        data: Any = yaml.safe_load(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("limits"), dict):
            raise ValueError(f"{path}: expected a mapping with a 'limits' mapping")
        limits = {}
        for k, v in data["limits"].items():
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{path}: limits.{k}: expected a positive integer (calls per window)")
            limits[str(k)] = v
        window = float(data.get("window_s", WINDOW_S))
        if window <= 0:
            raise ValueError(f"{path}: window_s must be > 0")
        return cls(limits, window, time_scale)

    def limit_for(self, action: str) -> int:
        if action in self.limits:
            return self.limits[action]
        for prefix in ("Describe", "List"):
            if action.startswith(prefix) and f"*{prefix}" in self.limits:
                return self.limits[f"*{prefix}"]
        return self.limits.get("*", 1000)

    def rate(self, action: str) -> float:
        """Calls per (scaled) second the action is allowed in the long run."""
        return self.limit_for(action) / self.window

    def acquire(self, access_key_id: str, region_id: str, action: str) -> int | None:
        """Take one token; ``None`` when allowed, else the milliseconds until one is available."""
        if not self.enabled:
            return None
        limit = self.limit_for(action)
        rate = limit / self.window
        now = time.monotonic()
        key = (access_key_id, region_id, action)
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = Bucket(float(limit), now)
            b.tokens = min(float(limit), b.tokens + (now - b.stamp) * rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return None
            self.denied += 1
            return max(1, math.ceil((1.0 - b.tokens) / rate * 1000))
