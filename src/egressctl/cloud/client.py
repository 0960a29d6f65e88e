"""The cloud seam: the SDK clients (ECS, VPC, STS) behind one ``call``, with rate limits, retries
classified by ``errors``, a deadline per call, and counters per action.

Everything above this module speaks in actions and request models of the official SDK, and gets
back response bodies or a classified ``CloudError``; nothing above it touches HTTP.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_vpc20160428.client import Client as VpcClient
from darabonba.runtime import RuntimeOptions

from . import errors
from .ratelimit import Quota, RateLimiter


@dataclass(frozen=True)
class Endpoint:
    host: str  # host[:port], what the SDK's Config.endpoint wants
    protocol: str  # HTTP | HTTPS

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``http://127.0.0.1:8080`` or ``https://ecs.cn-hangzhou.aliyuncs.com`` (scheme required)."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ValueError(f"endpoint {url!r}: expected http(s)://host[:port]")
        return cls(parts.netloc, parts.scheme.upper())


@dataclass
class CloudSettings:
    region: str
    profile: str | None = None
    ecs_endpoint: str | None = None
    vpc_endpoint: str | None = None
    sts_endpoint: str | None = None
    quotas: dict[str, Quota] | None = None  # None: the defaults (ratelimit.DEFAULT_QUOTAS)
    max_attempts: int = 8
    call_deadline_s: float = 120.0
    connect_timeout_ms: int = 5000
    read_timeout_ms: int = 15000
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 10.0


@dataclass
class CallStats:
    """Calls sent per action, with retries, throttles and errors by code (for reports and benchmarks)."""

    calls: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, counter: str, key: str) -> None:
        with self._lock:
            getattr(self, counter)[key] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"calls": dict(self.calls), "retries": dict(self.retries), "throttled": dict(self.throttled),
                    "errors": dict(self.errors)}

    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())


def make_credential(profile: str | None) -> CredentialClient:
    """The standard chain (env, ~/.aliyun/config.json, credentials.ini, RAM role, URI); ``--profile``
    picks a profile of the aliyun CLI's config explicitly."""
    if profile:
        from alibabacloud_credentials.provider import CLIProfileCredentialsProvider

        return CredentialClient(provider=CLIProfileCredentialsProvider(profile_name=profile))
    return CredentialClient()


class Cloud:
    SERVICES = ("ecs", "vpc", "sts")

    def __init__(self, settings: CloudSettings, credential: Any = None, limiter: RateLimiter | None = None):
        self.settings = settings
        self.credential = credential if credential is not None else make_credential(settings.profile)
        self.limiter = limiter or RateLimiter(settings.quotas)
        self._prepaid = threading.local()
        self.stats = CallStats()
        self._runtime = RuntimeOptions(read_timeout=settings.read_timeout_ms,
                                       connect_timeout=settings.connect_timeout_ms)
        endpoints = {"ecs": settings.ecs_endpoint, "vpc": settings.vpc_endpoint, "sts": settings.sts_endpoint}
        classes = {"ecs": EcsClient, "vpc": VpcClient, "sts": StsClient}
        self._clients = {name: classes[name](self._config(endpoints[name])) for name in self.SERVICES}
        self._methods: dict[tuple[str, str], Any] = {}
        self._rng = random.Random()

    def _config(self, endpoint_url: str | None) -> open_api_models.Config:
        cfg = open_api_models.Config(credential=self.credential, region_id=self.settings.region,
                                     connect_timeout=self.settings.connect_timeout_ms,
                                     read_timeout=self.settings.read_timeout_ms)
        if endpoint_url:
            ep = Endpoint.parse(endpoint_url)
            cfg.endpoint, cfg.protocol = ep.host, ep.protocol
        return cfg

    def _method(self, service: str, action: str) -> Any:
        key = (service, action)
        m = self._methods.get(key)
        if m is None:
            client = self._clients[service]
            wanted = action.lower() + "withoptions"
            name = next((n for n in dir(client) if n.endswith("_with_options") and n.replace("_", "") == wanted), None)
            if name is None:
                raise ValueError(f"the {service} SDK has no action {action}")
            m = self._methods[key] = getattr(client, name)
        return m

    def backoff(self, attempt: int, hint_s: float | None = None) -> float:
        """Full jitter (so retries of many instances do not synchronise into storms)."""
        cap = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * (2 ** (attempt - 1)))
        delay = self._rng.uniform(0, cap)
        if hint_s:
            delay = max(delay, hint_s * self._rng.uniform(1.0, 1.3))
        return delay

    def call(self, service: str, action: str, request: Any, *, idempotent: bool = True,
             deadline_s: float | None = None) -> Any:
        """Send one request; retry throttling and the cloud's hiccups (and, for idempotent requests,
        transport failures) with jittered backoff until it succeeds, fails otherwise, or the deadline."""
        method = self._method(service, action)
        return self._invoke(action, lambda: method(request, self._runtime), idempotent, deadline_s)

    def _invoke(self, action: str, send: Any, idempotent: bool, deadline_s: float | None) -> Any:
        deadline = time.monotonic() + (deadline_s if deadline_s is not None else self.settings.call_deadline_s)
        attempt = 0
        while True:
            attempt += 1
            if not self._take_prepaid(action):
                try:
                    self.limiter.acquire(action, deadline)
                except TimeoutError as e:
                    raise errors.Transient("ClientRateLimited", str(e), None, "", action) from None
            self.stats.add("calls", action)
            try:
                resp = send()
            except Exception as e:  # the SDK raises Tea exceptions; classify them once, here
                err = errors.from_sdk(e, action)
                self.stats.add("errors", f"{action}:{err.code}")
                if isinstance(err, errors.Throttled):
                    self.stats.add("throttled", action)
                    self.limiter.throttled(action, err.retry_after_s)
                retry = isinstance(err, errors.Throttled) or (
                    isinstance(err, errors.Transient) and (idempotent or not isinstance(err, errors.Ambiguous)))
                if not retry or attempt >= self.settings.max_attempts:
                    raise err from None
                delay = self.backoff(attempt, err.retry_after_s)
                if time.monotonic() + delay > deadline:
                    raise err from None
                self.stats.add("retries", action)
                time.sleep(delay)
                continue
            return resp.body

    # -- tokens reserved ahead (the engine schedules a step for when its tokens are due) ----------
    def prepay(self, actions: list[str]) -> None:
        """This thread's next call of each action in ``actions`` uses a token reserved beforehand; the
        list is consumed in place, so the caller sees which reservations are still unused."""
        self._prepaid.actions = actions

    def _take_prepaid(self, action: str) -> bool:
        actions = getattr(self._prepaid, "actions", None)
        if actions and action in actions:
            actions.remove(action)
            return True
        return False

    def ecs(self, action: str, request: Any, **kw: Any) -> Any:
        return self.call("ecs", action, request, **kw)

    def vpc(self, action: str, request: Any, **kw: Any) -> Any:
        return self.call("vpc", action, request, **kw)

    def caller_identity(self) -> Any:
        """STS GetCallerIdentity: the account the credentials belong to (plans are bound to it)."""
        sts = self._clients["sts"]
        return self._invoke("GetCallerIdentity", lambda: sts.get_caller_identity_with_options(self._runtime), True,
                            None)
