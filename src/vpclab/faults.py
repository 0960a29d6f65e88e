"""Fault injection: the faults real clouds produce, per action, off by default.

A fault plan is a list of rules; each rule names actions (shell-style patterns such as ``*``,
``Describe*``, ``AssociateEipAddress``), a kind, and how often it fires:

* ``throttle``: a burst: for ``burst_s`` seconds after it fires, every matching call is throttled
  (400 ``Throttling.User`` with ``x-acs-retry-after``);
* ``error``: the call fails with ``code``/``status`` before it is applied (default 503
  ``ServiceUnavailable``; also ``InternalError`` 500);
* ``latency``: the answer is delayed by a uniform ``min_ms``..``max_ms``;
* ``lost_response``: the call is applied, then the connection drops before the answer;
* ``sticky``: a transitional state lasts ``extra_s`` longer (``ops``: ``eni.attach``, ...);
* ``stale_describe``: Describe* answers do not show resources created in the last ``lag_s`` seconds;
* ``storm``: from ``start_s`` after the plan is set, for ``duration_s``, every matching call answers
  503 ``ServiceUnavailable``.

Rules come from ``vpclab serve --faults FILE`` (YAML ``{seed: 1, rules: [...]}``) or, at run time,
from the lab's admin action ``SetFaults`` (a signed request like any other; version ``vpclab``).
Every fault that fires is counted (``GetFaults`` answers the counts).
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import errors
from .server import FaultDecision

KINDS = ("throttle", "error", "latency", "lost_response", "sticky", "stale_describe", "storm")


class FaultError(ValueError):
    pass


@dataclass
class Rule:
    kind: str
    actions: str = "*"
    rate: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    _burst_until: float = 0.0

    def matches(self, action: str) -> bool:
        return any(fnmatch.fnmatchcase(action, p.strip()) for p in self.actions.split(","))


def parse_rules(data: Any, source: str = "<faults>") -> tuple[list[Rule], int | None]:
    if data is None:
        return [], None
    if not isinstance(data, dict) or not isinstance(data.get("rules", []), list):
        raise FaultError(f"{source}: expected a mapping with a 'rules' list")
    rules = []
    for i, r in enumerate(data.get("rules", [])):
        where = f"{source}: rules[{i}]"
        if not isinstance(r, dict):
            raise FaultError(f"{where}: expected a mapping")
        kind = r.get("kind")
        if kind not in KINDS:
            raise FaultError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
        rate = r.get("rate", 1.0)
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise FaultError(f"{where}.rate: must be a number from 0 to 1")
        actions = r.get("actions", "*")
        if not isinstance(actions, str) or not actions:
            raise FaultError(f"{where}.actions: must be a pattern string")
        params = {k: v for k, v in r.items() if k not in ("kind", "rate", "actions")}
        for k, v in params.items():
            if k in ("code",):
                if not isinstance(v, str):
                    raise FaultError(f"{where}.{k}: must be a string")
            elif k == "ops":
                if not isinstance(v, list):
                    raise FaultError(f"{where}.ops: must be a list of operation names")
            elif not isinstance(v, (int, float)) or v < 0:
                raise FaultError(f"{where}.{k}: must be a number >= 0")
        rules.append(Rule(kind, actions, float(rate), params))
    seed = data.get("seed")
    return rules, int(seed) if isinstance(seed, int) else None


class Faults:
    """The lab's fault plan; thread-safe; consulted by the server (per call) and the world
    (transition durations, Describe visibility)."""

    def __init__(self, rules: list[Rule] | None = None, seed: int | None = None):
        self._lock = threading.Lock()
        self.set(rules or [], seed)

    def set(self, rules: list[Rule], seed: int | None = None) -> None:
        with self._lock:
            self.rules = rules
            self._rng = random.Random(seed)
            self.started = time.monotonic()
            self.fired: Counter[str] = Counter()

    @classmethod
    def load(cls, path: str | Path) -> Faults:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise FaultError(f"{p}: {e}") from None
        rules, seed = parse_rules(data, str(p))
        return cls(rules, seed)

    def _roll(self, rule: Rule) -> bool:
        return rule.rate >= 1 or self._rng.random() < rule.rate

    def decide(self, action: str, access_key_id: str, region: str) -> FaultDecision | None:
        if action in ("SetFaults", "GetFaults"):
            return None
        now = time.monotonic()
        delay, drop = 0.0, False
        with self._lock:
            for r in self.rules:
                if not r.matches(action):
                    continue
                if r.kind == "storm":
                    start = float(r.params.get("start_s", 0))
                    if start <= now - self.started < start + float(r.params.get("duration_s", 5)) and \
                            self._roll(r):
                        self.fired[f"storm:{action}"] += 1
                        return FaultDecision(errors.service_unavailable())
                elif r.kind == "throttle":
                    if now < r._burst_until or self._roll(r):
                        if now >= r._burst_until:
                            r._burst_until = now + float(r.params.get("burst_s", 1.0))
                        self.fired[f"throttle:{action}"] += 1
                        return FaultDecision(errors.throttled(int(r.params.get("retry_after_ms", 200))))
                elif r.kind == "error" and self._roll(r):
                    self.fired[f"error:{action}"] += 1
                    code = str(r.params.get("code", "ServiceUnavailable"))
                    status = int(r.params.get("status", 503 if code == "ServiceUnavailable" else 500))
                    return FaultDecision(errors.ApiError(code, f"injected fault: {code}", status))
                elif r.kind == "latency" and self._roll(r):
                    lo, hi = float(r.params.get("min_ms", 50)), float(r.params.get("max_ms", 500))
                    delay = max(delay, self._rng.uniform(lo, hi) / 1000)
                    self.fired[f"latency:{action}"] += 1
                elif r.kind == "lost_response" and self._roll(r):
                    drop = True
                    self.fired[f"lost_response:{action}"] += 1
        if delay or drop:
            return FaultDecision(delay_s=delay, drop_response=drop)
        return None

    def extra_latency(self, op: str) -> float:
        """Seconds a transitional state of ``op`` sticks beyond its profile (the ``sticky`` kind)."""
        with self._lock:
            for r in self.rules:
                if r.kind == "sticky" and op in r.params.get("ops", [op]) and self._roll(r):
                    self.fired[f"sticky:{op}"] += 1
                    return float(r.params.get("extra_s", 5))
        return 0.0

    def describe_lag(self, action: str) -> float:
        with self._lock:
            for r in self.rules:
                if r.kind == "stale_describe" and r.matches(action) and self._roll(r):
                    return float(r.params.get("lag_s", 2))
        return 0.0

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.fired)
