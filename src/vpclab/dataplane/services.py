"""Services the lab's guests and internet see: the instance metadata service at 100.100.100.200,
the internet echo service (answers the caller's address, like the seed's myip.ipip.net), and an
``sshd`` stand-in on port 22 of every instance that completes a real TCP exchange and names it.

All of them are sockets created inside the lab's namespaces and served by threads of the lab's
process; nothing listens in the host's namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import secrets
import selectors
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..resources.eips import Eip
from ..resources.enis import Eni
from ..resources.instances import Instance
from ..resources.network import Vpc, VSwitch
from ..world import World
from . import kernel

log = logging.getLogger("vpclab.dataplane")
TOKEN_TTL_MAX = 21600


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve_http(sock: socket.socket, handler: type[BaseHTTPRequestHandler]) -> _Server:
    srv = _Server(sock.getsockname()[:2], handler, bind_and_activate=False)
    srv.socket.close()
    srv.socket = sock
    srv.server_address = sock.getsockname()[:2]
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                     name=f"vpclab-http-{srv.server_address}").start()
    return srv


class EchoHandler(BaseHTTPRequestHandler):
    """``GET /`` answers the caller's address in myip.ipip.net's format."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"当前 IP：{self.client_address[0]}  来自于：vpclab internet\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def metadata_handler(world: World, vpc_id: str) -> type[BaseHTTPRequestHandler]:
    """The metadata service of one VPC's router: who is asking is known by the source address."""
    tokens: dict[str, tuple[str, float]] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self) -> None:
            if self.path.rstrip("/") != "/latest/api/token":
                return self._reply(404, "Not Found")
            if self.headers.get("X-Forwarded-For"):
                return self._reply(403, "Forbidden")
            try:
                ttl = int(self.headers.get("X-aliyun-ecs-metadata-token-ttl-seconds", ""))
            except ValueError:
                return self._reply(400, "Bad Request")
            if not 1 <= ttl <= TOKEN_TTL_MAX:
                return self._reply(400, "Bad Request")
            token = secrets.token_urlsafe(32)
            tokens[token] = (self.client_address[0], time.monotonic() + ttl)
            return self._reply(200, token)

        def do_GET(self) -> None:
            token = self.headers.get("X-aliyun-ecs-metadata-token")
            if token is not None:
                hit = tokens.get(token)
                if hit is None or hit[0] != self.client_address[0] or hit[1] < time.monotonic():
                    return self._reply(401, "Unauthorized")
            with world.lock:
                tree = metadata_tree(world, vpc_id, self.client_address[0])
            if tree is None:
                return self._reply(404, "Not Found")
            path = self.path.split("?", 1)[0]
            for root in ("/latest/meta-data", "/2016-01-01/meta-data"):
                if path == root or path.startswith(root + "/"):
                    rest = path[len(root):].strip("/")
                    break
            else:
                return self._reply(404, "Not Found")
            if rest == "all":
                return self._reply(200, json.dumps(tree))
            node: Any = tree
            for part in [x for x in rest.split("/") if x]:
                if not isinstance(node, dict) or part not in node:
                    return self._reply(404, "Not Found")
                node = node[part]
            if isinstance(node, dict):
                return self._reply(200, "\n".join(k + "/" if isinstance(v, dict) else k for k, v in node.items()))
            return self._reply(200, str(node))

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def metadata_tree(world: World, vpc_id: str, source_ip: str) -> dict[str, Any] | None:
    """The documented tree (research/aliyun-api.md §5) for the instance that owns ``source_ip``."""
    eni = next((e for e in world.all(Eni) if e.vpc_id == vpc_id and e.primary_ip == source_ip and e.instance_id),
               None)
    if eni is None:
        return None
    inst = world.get(Instance, eni.instance_id)
    vpc = world.get(Vpc, vpc_id)
    if inst is None or vpc is None:
        return None
    macs: dict[str, Any] = {}
    primary_mac = ""
    for eni_id in inst.eni_ids:
        e = world.get(Eni, eni_id)
        if e is None or (e.eni_type != "Primary" and e.status not in ("InUse", "Detaching")):
            continue
        vsw = world.get(VSwitch, e.vswitch_id)
        net = ipaddress.ip_network(vsw.cidr) if vsw else None
        if e.eni_type == "Primary":
            primary_mac = e.mac
        macs[e.mac] = {
            "network-interface-id": e.id, "primary-ip-address": e.primary_ip,
            "private-ipv4s": json.dumps([e.primary_ip]), "netmask": str(net.netmask) if net else "",
            "gateway": str(net.broadcast_address - 2) if net else "", "vswitch-cidr-block": vsw.cidr if vsw else "",
            "vswitch-id": e.vswitch_id, "vpc-cidr-block": vpc.cidr, "vpc-id": vpc_id, "mac": e.mac,
        }
    eip = world.get(Eip, inst.eip_id) if inst.eip_id else None
    public = inst.public_ip or (eip.ip if eip is not None and eip.status == "InUse" else "")
    vsw = world.get(VSwitch, inst.vswitch_id)
    tree: dict[str, Any] = {
        "instance-id": inst.id, "hostname": inst.hostname, "region-id": inst.region_id, "zone-id": inst.zone_id,
        "image-id": inst.image_id, "instance": {"instance-type": inst.instance_type}, "mac": primary_mac,
        "private-ipv4": inst.private_ip, "vpc-id": vpc_id, "vswitch-id": inst.vswitch_id,
        "vpc-cidr-block": vpc.cidr, "vswitch-cidr-block": vsw.cidr if vsw else "", "network-type": "vpc",
        "owner-account-id": world.account_id, "serial-number": inst.id[2:],
        "network": {"interfaces": {"macs": macs}},
    }
    if public:
        tree["eipv4"] = public
    return tree


class Sshd:
    """Port 22 of every running instance: a banner naming the instance, then close (one thread)."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._socks: dict[str, socket.socket] = {}
        self._lock = threading.Lock()
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._loop, name="vpclab-sshd", daemon=True)
        self._thread.start()

    def listen(self, key: str, ns: str, banner: str) -> None:
        with self._lock:
            if key in self._socks:
                return
            sock = kernel.listener(ns, "0.0.0.0", 22)
            sock.setblocking(False)
            self._socks[key] = sock
            self._sel.register(sock, selectors.EVENT_READ, banner.encode())
        self._wake_w.send(b"x")

    def forget(self, key: str) -> None:
        with self._lock:
            sock = self._socks.pop(key, None)
            if sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._sel.unregister(sock)
                sock.close()

    def _loop(self) -> None:
        while not self._stop:
            for key, _ in self._sel.select(timeout=0.5):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                    continue
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                with contextlib.suppress(OSError):
                    conn.settimeout(1.0)
                    conn.sendall(key.data)
                conn.close()

    def close(self) -> None:
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        with self._lock:
            for sock in self._socks.values():
                sock.close()
            self._socks.clear()
