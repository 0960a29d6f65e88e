"""The HTTP front of the emulator: authenticate, route by version and action, throttle, run the
handler under the world lock, persist, answer JSON.

Stdlib ``ThreadingHTTPServer`` with HTTP/1.1 keep-alive, Nagle disabled and a deep listen backlog:
the sync SDK reuses one connection, the async SDK opens one per call (research/sdk-wire.md §5, §9).
A ticker thread completes transitional states when they are due, so listeners (the data plane)
see them without waiting for a request.
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import errors, idempotency
from .actions import ACTIONS, SERVICES, Call, load_all
from .protocol import Params, dumps, new_request_id
from .signing import NonceCache, verify_acs3, verify_v2
from .throttle import Throttle
from .world import World

log = logging.getLogger("vpclab.server")
HOST_ID = "vpclab.local"

# A fault hook sees (action, access key, region) before the handler and may raise an ApiError or
# ask to drop the answer after the change is applied (issue: faults).  ``None`` = no faults.
FaultHook = Callable[[str, str, str], "FaultDecision | None"]


class FaultDecision:
    """What a fault hook asks for one call: fail it, delay it, drop its answer after applying it, or
    hold it (before it is applied, or after, before the answer) until an event is set."""

    def __init__(self, error: errors.ApiError | None = None, drop_response: bool = False, delay_s: float = 0.0,
                 hold_before: threading.Event | None = None, hold_after: threading.Event | None = None):
        self.error = error
        self.drop_response = drop_response
        self.delay_s = delay_s
        self.hold_before = hold_before
        self.hold_after = hold_after


class DropConnection(Exception):
    """The change was applied; the answer is lost on the way (a lost response)."""


class Api:
    """Protocol-level request handling, independent of the HTTP server (easy to test and to bench)."""

    def __init__(self, world: World, keys: dict[str, str], throttle: Throttle | None = None,
                 check_nonce: bool = True, faults: FaultHook | None = None):
        load_all()
        self.world = world
        self.keys = dict(keys)
        self.throttle = throttle or Throttle(enabled=False)
        self.nonces = NonceCache() if check_nonce else None
        self.faults = faults
        self.calls = 0

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
               ) -> tuple[int, dict[str, str], bytes]:
        request_id = new_request_id()
        try:
            status, extra, payload = self._handle(method, target, headers, body, request_id)
        except errors.ApiError as e:
            extra = {}
            if e.retry_after_ms is not None:
                extra["x-acs-retry-after"] = str(e.retry_after_ms)
            status, payload = e.status, {"RequestId": request_id, "HostId": HOST_ID, "Code": e.code,
                                         "Message": e.message, "Recommend": ""}
        except DropConnection:
            raise
        except Exception:  # a bug must look like the cloud's InternalError, and be logged
            log.exception("internal error handling request %s", request_id)
            e = errors.internal()
            status, extra, payload = e.status, {}, {"RequestId": request_id, "HostId": HOST_ID, "Code": e.code,
                                                    "Message": e.message}
        return status, {"Content-Type": "application/json;charset=utf-8", "x-acs-request-id": request_id,
                        **extra}, dumps(payload)

    def _handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, request_id: str
                ) -> tuple[int, dict[str, str], dict[str, Any]]:
        if method not in ("GET", "POST"):
            raise errors.ApiError("UnsupportedHTTPMethod", f"The HTTP method {method} is not supported.", 400)
        parts = urlsplit(target)
        query = parse_qsl(parts.query, keep_blank_values=True)
        lower = {k.lower(): v for k, v in headers}
        form: list[tuple[str, str]] = []
        if body and lower.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        pairs = query + form
        lookup = self.keys.get
        if "authorization" in lower:
            akid = verify_acs3(method, parts.path or "/", query, headers, body, lookup, self.nonces)
        elif any(k == "Signature" for k, _ in pairs):
            akid = verify_v2(method, pairs, lookup, self.nonces)
        else:
            raise errors.incomplete_signature("The request is not signed.")
        qdict = dict(pairs)
        action = lower.get("x-acs-action") or qdict.get("Action") or ""
        version = lower.get("x-acs-version") or qdict.get("Version") or ""
        service = SERVICES.get(version)
        if service is None:
            raise errors.unknown_version(version)
        spec = ACTIONS.get((service, action))
        if spec is None:
            raise errors.unknown_action(action)
        params = Params(pairs)
        region = params.raw.get("RegionId", "")
        retry_ms = self.throttle.acquire(akid, region, action)
        if retry_ms is not None:
            raise errors.throttled(retry_ms)
        decision = self.faults(action, akid, region) if self.faults else None
        if decision is not None and decision.hold_before is not None:
            decision.hold_before.wait()
            if decision.drop_response:  # the client went away before sending: nothing is applied
                raise DropConnection()
        if decision is not None and decision.delay_s:
            time.sleep(decision.delay_s)
        if decision is not None and decision.error is not None:
            raise decision.error
        call = Call(self.world, params, akid, action, service, request_id)
        with self.world.lock:
            self.calls += 1
            self.world.advance()
            try:
                body_out = self._run(spec, call)
            finally:
                self.world.commit()
        if decision is not None and decision.hold_after is not None:
            decision.hold_after.wait()
        if decision is not None and decision.drop_response:
            raise DropConnection()
        return 200, {}, {"RequestId": request_id, **body_out}

    def _run(self, spec: Any, call: Call) -> dict[str, Any]:
        token = call.params.str("ClientToken") if spec.client_token else None
        if not token:
            return spec.handler(call)
        fp = call.params.fingerprint()
        cached = idempotency.lookup(call.world, call.access_key_id, spec.name, token, fp)
        if cached is not None:
            return cached
        out = spec.handler(call)
        idempotency.remember(call.world, call.access_key_id, spec.name, token, fp, out)
        return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "vpclab"
    sys_version = ""
    api: Api  # set on the subclass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            status, headers, payload = self.api.handle(self.command, self.path, list(self.headers.items()), body)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        # status line, headers and body in one write: one syscall, nothing for Nagle to hold back
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"Date: {_http_date()}", "Server: vpclab"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(payload)}")
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s -> %d", self.address_string(), self.command, self.path[:120], status)

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s - %s", self.address_string(), format % args)


_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


class ApiServer:
    """The emulator on a TCP port, plus the ticker that completes transitions on time."""

    def __init__(self, api: Api, host: str = "127.0.0.1", port: int = 0):
        handler = type("Handler", (_Handler,), {"api": api})
        self.api = api
        self.httpd = _Server((host, port), handler)
        self.host, self.port = self.httpd.server_address[:2]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._extra: list[_Server] = []

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_socket(self, sock: socket.socket) -> None:
        """Serve the same API on another listening socket (e.g. one inside the operator namespace)."""
        srv = _Server(sock.getsockname()[:2], self.httpd.RequestHandlerClass, bind_and_activate=False)
        srv.socket.close()
        srv.socket = sock
        self._extra.append(srv)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                             name="vpclab-http-extra")
        self._threads.append(t)
        t.start()

    def start(self) -> None:
        t1 = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="vpclab-http",
                              daemon=True)
        t2 = threading.Thread(target=self._tick, name="vpclab-ticker", daemon=True)
        self._threads = [t1, t2]
        t1.start()
        t2.start()

    def _tick(self) -> None:
        world = self.api.world
        while not self._stop.is_set():
            with world.lock:
                world.advance()
                world.commit()
                deadline = world.next_deadline()
                wait = 0.5 if deadline is None else min(max(deadline - world.clock.now(), 0.0), 0.5)
                if wait > 0:
                    world.wait_for_work(wait)

    def stop(self) -> None:
        self._stop.set()
        with self.api.world.lock:
            self.api.world._wake.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        for srv in self._extra:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)


def ready_line(endpoint: str, region_id: str, access_key_id: str, **extra: Any) -> str:
    return json.dumps({"endpoint": endpoint, "region_id": region_id, "access_key_id": access_key_id, **extra})
