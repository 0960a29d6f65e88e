"""Time for the emulated cloud: real wall time, with operation latencies scaled by ``time_scale``.

``time_scale`` multiplies every latency (0.01 = a hundred times faster than the profile says) and
the throttling window, so a benchmark can run the realistic profile in a fraction of the time.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

PROFILES_DIR = Path(__file__).parent / "profiles"


def iso_minute(ts: float) -> str:
    """``yyyy-MM-ddTHH:mmZ``: the format ECS uses for CreationTime and friends."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def iso_second(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Latency:
    base_s: float
    jitter_s: float = 0.0


class LatencyProfile:
    """Per-operation durations of transitional states: ``instant``, ``realistic`` or a YAML file."""

    def __init__(self, name: str, table: dict[str, Latency], time_scale: float = 1.0, seed: int | None = None):
        if time_scale < 0:
            raise ValueError("time scale must be >= 0")
        self.name = name
        self.table = table
        self.time_scale = time_scale
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, spec: str, time_scale: float = 1.0, seed: int | None = None) -> LatencyProfile:
        """``instant``, ``realistic`` or the path of a YAML file ``{operation: {base: s, jitter: s}}``."""
        if spec == "instant":
            return cls("instant", {}, time_scale, seed)
        path = PROFILES_DIR / f"{spec}.yaml" if spec == "realistic" else Path(spec)
        if not path.is_file():
            raise ValueError(f"latency profile {spec!r}: no such profile or file")
        data: Any = yaml.safe_load(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("operations"), dict):
            raise ValueError(f"{path}: expected a mapping with an 'operations' mapping")
        table = {}
        for op, v in data["operations"].items():
            if not isinstance(v, dict) or "base" not in v:
                raise ValueError(f"{path}: operations.{op}: expected {{base: seconds, jitter: seconds}}")
            base, jitter = float(v["base"]), float(v.get("jitter", 0))
            if base < 0 or jitter < 0:
                raise ValueError(f"{path}: operations.{op}: durations must be >= 0")
            table[str(op)] = Latency(base, jitter)
        return cls(str(data.get("name", path.stem)), table, time_scale, seed)

    def sample(self, op: str) -> float:
        """Seconds of wall time the operation takes (already scaled)."""
        lat = self.table.get(op)
        if lat is None or self.time_scale == 0:
            return 0.0
        with self._lock:
            j = self._rng.uniform(-lat.jitter_s, lat.jitter_s) if lat.jitter_s else 0.0
        return max(0.0, lat.base_s + j) * self.time_scale

    def nominal(self, op: str) -> float:
        lat = self.table.get(op)
        return 0.0 if lat is None else lat.base_s * self.time_scale


class Clock:
    """Wall clock (seconds since the epoch): deadlines survive a restart of the lab."""

    def now(self) -> float:
        return time.time()
