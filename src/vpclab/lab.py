"""``Lab``: the emulator in-process (tests, benchmarks) or behind ``vpclab serve``.

    with Lab(scenario="scenarios/seed.yaml") as lab:
        client = EcsClient(Config(access_key_id=lab.access_key_id, access_key_secret=...,
                                  endpoint=lab.endpoint_hostport, protocol="HTTP"))
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from . import scenario as scenario_mod
from .catalogue import Catalogue
from .clock import LatencyProfile
from .faults import Faults
from .resources import assistant
from .server import Api, ApiServer, FaultHook, ready_line
from .store import Store
from .throttle import Throttle
from .world import World

# The documented default key pair (README): fake, for the lab only.
DEFAULT_ACCESS_KEY_ID = "LTAI5tVpcLabDefault0001"
DEFAULT_ACCESS_KEY_SECRET = "vpclab-default-secret-not-for-any-cloud"


class Lab:
    def __init__(self, scenario: str | Path | dict[str, Any] | None = None, *, state_dir: str | Path | None = None,
                 latency: str = "instant", time_scale: float = 1.0, access_key_id: str = DEFAULT_ACCESS_KEY_ID,
                 access_key_secret: str = DEFAULT_ACCESS_KEY_SECRET, host: str = "127.0.0.1", port: int = 0,
                 throttle: str | Throttle = "off", executor: Any = None, convert_rule: str = "current",
                 region_id: str | None = None, extra_keys: dict[str, str] | None = None,
                 faults: Faults | FaultHook | None = None, seed: int | None = None, catalogue: Catalogue | None = None,
                 account_id: str = "1234567890123456", dataplane: str = "off"):
        if dataplane not in ("auto", "on", "off"):
            raise ValueError("dataplane must be auto, on or off")
        if convert_rule not in ("current", "legacy"):
            raise ValueError("convert_rule must be 'current' or 'legacy'")
        self.latency = LatencyProfile.load(latency, time_scale, seed=seed)
        self.throttle = throttle if isinstance(throttle, Throttle) else Throttle.load(throttle, time_scale)
        self.store = Store(Path(state_dir)) if state_dir is not None else None
        self.world = World(catalogue or Catalogue.default(), self.latency, store=self.store, account_id=account_id)
        self.world.executor = executor
        self.world.convert_rule = convert_rule  # type: ignore[attr-defined]
        self.access_key_id = access_key_id
        self.keys = {access_key_id: access_key_secret, **(extra_keys or {})}
        self.ids: dict[str, Any] = {}
        self._load(scenario)
        self.region_id = region_id or self._region or "cn-hangzhou"
        # a Faults plan is consulted by the server and the world; a bare hook (tests) by the server only
        self.faults = faults if isinstance(faults, Faults) else Faults()
        self.world.faults = self.faults
        hook = faults if (faults is not None and not isinstance(faults, Faults)) else self.faults.decide
        self.api = Api(self.world, self.keys, self.throttle, faults=hook)
        self._host, self._port = host, port
        self.server: ApiServer | None = None
        self.dataplane_mode = dataplane
        self.dataplane: Any = None
        self.dataplane_note = "off"
        self._state_dir = Path(state_dir) if state_dir is not None else None

    def _load(self, scenario: str | Path | dict[str, Any] | None) -> None:
        self._region: str | None = None
        if self.store is not None and not self.store.is_empty():
            objs, next_seq = self.store.load()
            self.world.load(objs, next_seq)
            self._region = self.store.get_meta("region_id")
            self.world.account_id = self.store.get_meta("account_id") or self.world.account_id
            with self.world.lock:
                self.world.commit()
            return
        if scenario is None:
            return
        if isinstance(scenario, dict):
            sc, source = scenario_mod.parse(scenario), "<scenario>"
        else:
            sc, source = scenario_mod.load_file(scenario), str(scenario)
        self.ids = scenario_mod.build(self.world, sc, source)
        self._region = sc.region
        if self.store is not None:
            self.store.set_meta("region_id", sc.region)
            self.store.set_meta("account_id", self.world.account_id)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> Lab:
        # the loaded world is long-lived: keep the cyclic GC from re-walking it on every collection
        gc.collect()
        gc.freeze()
        self.server = ApiServer(self.api, self._host, self._port)
        self.server.start()
        if self.dataplane_mode != "off":
            from .dataplane import DataPlane, kernel

            reason = kernel.unavailable_reason()
            if reason is not None:
                if self.dataplane_mode == "on":
                    self.stop()
                    raise RuntimeError(f"the data plane cannot run: {reason}")
                self.dataplane_note = f"off: {reason}"
            else:
                self.dataplane = DataPlane(self.world, self._state_dir)
                try:
                    self.dataplane.start(self.server)
                except BaseException:
                    self.stop()
                    raise
                self.dataplane_note = "on"
        return self

    def stop(self) -> None:
        if self.dataplane is not None:
            self.dataplane.stop()
            self.dataplane = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        assistant.shutdown(self.world)
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- how clients reach it -------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self.server is not None, "the lab is not started"
        return self.server.endpoint

    @property
    def endpoint_hostport(self) -> str:
        """``host:port``: what the SDK's ``Config.endpoint`` wants (with ``protocol='HTTP'``)."""
        assert self.server is not None, "the lab is not started"
        return f"{self.server.host}:{self.server.port}"

    def ready_line(self, **extra: Any) -> str:
        if self.dataplane is not None:
            st = self.dataplane.status()
            extra = {"dataplane": "on", "lab": st["prefix"], "echo_url": st["echo_url"],
                     "operator_endpoint": self.dataplane.api_endpoint, **extra}
        else:
            extra = {"dataplane": self.dataplane_note, **extra}
        return ready_line(self.endpoint, self.region_id, self.access_key_id, **extra)
