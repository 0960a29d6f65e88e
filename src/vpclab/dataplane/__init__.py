"""vpclab's data plane: the emulated cloud as real packets in network namespaces (issue: data plane).

``DataPlane`` owns one lab's namespaces (all named ``<prefix>-...``, the prefix unique per lab),
keeps the kernel equal to the emulated state as the API changes it (a reconciler thread fed by the
world's change events), serves the metadata, echo and sshd stand-ins, runs Cloud Assistant commands
inside instances, and removes everything it created on stop - or, after a crash, on the next start
with the same state directory, or with ``vpclab clean``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..world import World
from . import kernel
from .guests import GuestExecutor, GuestRoot, run_units
from .model import Desired, snapshot
from .services import EchoHandler, Sshd, metadata_handler, serve_http
from .topology import ECHO_IP, METADATA_IP, OPERATOR_IP, Indexes, Topology

log = logging.getLogger("vpclab.dataplane")
REGISTRY_DIR = Path("/run/vpclab")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_registry(path: Path) -> list[str]:
    """Remove what a (crashed or stopped) lab recorded in ``path``: its namespaces, its files."""
    try:
        reg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    prefix = str(reg.get("prefix", ""))
    removed = []
    if not prefix.startswith("vl") or len(prefix) < 4:
        return removed  # not ours: never delete on the strength of a file we cannot vouch for
    for ns in reg.get("namespaces", []):
        if isinstance(ns, str) and ns.startswith(prefix + "-") and kernel.ns_exists(ns):
            kernel.ns_del(ns)
            removed.append(ns)
    base = reg.get("base")
    if isinstance(base, str) and Path(base).name == prefix and Path(base).is_dir():
        shutil.rmtree(base, ignore_errors=True)
    path.unlink(missing_ok=True)
    return removed


def registries() -> list[dict[str, Any]]:
    out = []
    for p in sorted(REGISTRY_DIR.glob("vl*.json")) if REGISTRY_DIR.is_dir() else []:
        try:
            reg = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        reg["registry"] = str(p)
        reg["alive"] = _alive(int(reg.get("pid", 0) or 0))
        out.append(reg)
    return out


class DataPlane:
    def __init__(self, world: World, state_dir: Path | None = None):
        self.world = world
        self.prefix = "vl" + secrets.token_hex(2)
        self.state_dir = state_dir
        root = (state_dir / "dataplane") if state_dir else Path(tempfile.gettempdir()) / "vpclab"
        self.base = root / self.prefix
        self.idx = Indexes()
        self.topo = Topology(self.prefix, self.idx)
        self.sshd: Sshd | None = None
        self._servers: list[Any] = []
        self._metadata_vpcs: set[str] = set()
        self._roots: dict[str, GuestRoot] = {}
        self._dirty = threading.Event()
        self._changes = 0  # world changes seen; the kernel reflects the first `_synced` of them
        self._synced = 0
        self._sync_cv = threading.Condition()
        self._reboots: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._desired: Desired | None = None
        self._lock = threading.Lock()  # serialises kernel changes
        self.reconciles = 0
        self.errors: list[str] = []
        self.registry_path = REGISTRY_DIR / f"{self.prefix}.json"
        self.api_endpoint = ""

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, api_server: Any = None) -> None:
        if self.state_dir is not None:
            prev = self.state_dir / "dataplane.json"
            if prev.exists():
                removed = clean_registry(prev)
                if removed:
                    log.warning("removed %d namespaces left by a previous run", len(removed))
        self.base.mkdir(parents=True, exist_ok=True)
        self._write_registry()
        self.topo.build_globals()
        self._servers.append(serve_http(kernel.listener(self.topo.echo, ECHO_IP, 80), EchoHandler))
        if api_server is not None:
            sock = kernel.listener(self.topo.operator, "127.0.0.1", api_server.port)
            api_server.serve_socket(sock)
            self.api_endpoint = f"http://127.0.0.1:{api_server.port}"
        self.sshd = Sshd()
        self.world.executor = GuestExecutor(self)
        self.world.subscribe(self._on_change)
        self.reconcile()
        self._thread = threading.Thread(target=self._loop, name="vpclab-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        self._servers.clear()
        if self.sshd is not None:
            self.sshd.close()
        with self._lock:
            for ns in reversed(self.topo.namespaces()):
                kernel.ns_del(ns)
        shutil.rmtree(self.base, ignore_errors=True)
        self.registry_path.unlink(missing_ok=True)
        if self.state_dir is not None:
            (self.state_dir / "dataplane.json").unlink(missing_ok=True)

    # -- reconciling ----------------------------------------------------------------------------------
    def _on_change(self, changes: list[Any], events: list[Any]) -> None:
        for name, obj in events:
            if name == "instance.rebooted":
                self._reboots.add(obj.id)  # even when the API never showed it down between two looks
        with self._sync_cv:
            self._changes += 1
        self._dirty.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait(0.5)
            if self._stop.is_set():
                return
            if self._dirty.is_set():
                with self._sync_cv:
                    gen = self._changes  # every change up to here is in the snapshot reconcile takes
                self._dirty.clear()
                try:
                    self.reconcile()
                except Exception as e:  # keep serving; the next change tries again
                    log.exception("data plane reconcile failed")
                    self.errors.append(f"{type(e).__name__}: {e}")
                # even after a failure: the kernel is as close as it gets until the next change, and a
                # command waiting for it should run (and see what is there) rather than time out
                with self._sync_cv:
                    self._synced = max(self._synced, gen)
                    self._sync_cv.notify_all()

    def wait_synced(self, timeout: float) -> bool:
        """Until the kernel reflects every change the world had when called (False: timed out).  A
        guest command waits for this, as a NIC the API shows InUse is in the real guest: under load the
        lab's kernel work can lag the API by seconds."""
        with self._sync_cv:
            gen = self._changes
            return self._sync_cv.wait_for(lambda: self._synced >= gen or self._stop.is_set(), timeout)

    def reconcile(self) -> dict[str, list[str]]:
        with self.world.lock:
            d = snapshot(self.world)
            reboots, self._reboots = self._reboots, set()
        with self._lock:
            changed = self.topo.apply(d)
            for iid in sorted(reboots):
                spec = d.instances.get(iid)
                if spec is not None and spec.running and iid not in changed["booted"]:
                    self.topo.boot(spec)
                    changed["booted"].append(iid)
            self._desired = d
            self.reconciles += 1
            for vpc_id in d.vpcs:
                if vpc_id not in self._metadata_vpcs:
                    sock = kernel.listener(self.topo.router(vpc_id), METADATA_IP, 80)
                    self._servers.append(serve_http(sock, metadata_handler(self.world, vpc_id)))
                    self._metadata_vpcs.add(vpc_id)
            for iid, spec in d.instances.items():
                self._roots.setdefault(iid, GuestRoot(self.base / "guests" / iid))
                if spec.running and self.sshd is not None and spec.linux:
                    self.sshd.listen(iid, self.topo.inst(iid), f"SSH-2.0-vpclab_sshd {spec.name} {iid}\r\n")
            for iid in [i for i in self._roots if i not in d.instances]:
                if self.sshd is not None:
                    self.sshd.forget(iid)
                shutil.rmtree(self._roots.pop(iid).base, ignore_errors=True)
            for iid in changed["booted"]:
                if iid in self._roots:
                    for unit, code, out in run_units(self._roots[iid], self.topo.inst(iid)):
                        if code != 0:
                            log.warning("%s: unit %s exited %d: %s", iid, unit, code, out[-300:])
            self._write_registry()
        return changed

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Until the kernel reflects every change made so far (tests and benchmarks)."""
        end = time.monotonic() + timeout
        while self._dirty.is_set() and time.monotonic() < end:
            time.sleep(0.01)
        with self._lock:
            pass

    # -- what other parts ask --------------------------------------------------------------------------
    def instance_ns(self, iid: str) -> str | None:
        d = self._desired
        if d is None or iid not in d.instances:
            return None
        return self.topo.inst(iid)

    def guest_root(self, iid: str) -> GuestRoot | None:
        return self._roots.get(iid)

    def hosts(self) -> dict[str, str]:
        """Names ``vpclab exec`` accepts: instance ids and names, ``echo``/``internet``, ``operator``."""
        out = {"echo": self.topo.echo, "internet": self.topo.echo, "operator": self.topo.operator,
               "edge": self.topo.edge}
        d = self._desired
        if d is not None:
            for iid, spec in d.instances.items():
                out[iid] = self.topo.inst(iid)
                out.setdefault(spec.name, self.topo.inst(iid))
            for vpc_id in d.vpcs:
                out[f"router:{vpc_id}"] = self.topo.router(vpc_id)
            for nat_id in d.nats:
                out[f"nat:{nat_id}"] = self.topo.nat(nat_id)
        return out

    def status(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "namespaces": self.topo.namespaces(), "hosts": self.hosts(),
                "echo_url": f"http://{ECHO_IP}/", "operator_ip": OPERATOR_IP, "reconciles": self.reconciles,
                "errors": self.errors[-5:]}

    def _write_registry(self) -> None:
        reg = {"prefix": self.prefix, "pid": os.getpid(), "session": os.environ.get("VPCLAB_SESSION", ""),
               "namespaces": self.topo.namespaces(),
               "hosts": self.hosts(), "base": str(self.base), "api": self.api_endpoint,
               "echo_url": f"http://{ECHO_IP}/", "guest_roots": {i: str(r.base) for i, r in self._roots.items()}}
        text = json.dumps(reg, indent=1)
        REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
        for path in ([self.registry_path] + ([self.state_dir / "dataplane.json"] if self.state_dir else [])):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
