"""A small network-namespace lab for the guest routing script (root only).

Topology (DESIGN §2.5, scaled down)::

    inet (198.51.100.10) ── wan0 ┐
                                 router: br0 = vSwitch 192.168.3.0/24, gateway 192.168.3.253
    guest eth0 .10 ── p10 ───────┤  SDN: static neighbours + static FDB, no learning,
    guest eth1 .11 ── p11 ───────┘  per-port source check (MAC + IP + ARP sender) in nftables;
                                    "EIP" 203.0.113.10 <-> .11 (DNAT + SNAT), .10 -> SNAT 203.0.113.100

Every namespace name starts with a per-lab prefix ``egt-<pid>-<n>-``; :meth:`NetLab.close` deletes
only the namespaces and processes this lab created, and runs even when a test fails (fixture).
Guest files live in overlay upper directories under a per-lab temporary directory: scripts run in a
private mount namespace where ``/etc`` and ``/usr/local`` are overlays and ``/run/systemd`` is an
empty directory, so nothing is written to the host's ``/etc`` or ``/usr/local``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_COUNTER = itertools.count()

SUBNET = "192.168.3.0/24"
PREFIX = 24
GATEWAY = "192.168.3.253"
PRIMARY_IP, PRIMARY_MAC = "192.168.3.10", "00:16:3e:00:00:10"
ENI_IP, ENI_MAC = "192.168.3.11", "00:16:3e:00:00:11"
INET_IP = "198.51.100.10"
EIP = "203.0.113.10"
SNAT_IP = "203.0.113.100"
WHOAMI_PORT = 8080
SERVICE_PORT = 2222

_SERVER = r"""
import socket, sys
port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(64)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    try:
        c.sendall(((peer[0] if mode == "peer" else c.getsockname()[0]) + "\n").encode())
    except OSError:
        pass
    finally:
        c.close()
"""

_CLIENT = r"""
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.settimeout(timeout)
try:
    if len(sys.argv) > 4:
        s.bind((sys.argv[4], 0))
    s.connect((host, port))
    print("OK " + s.recv(200).decode().strip())
except OSError as e:
    print("FAIL " + type(e).__name__)
"""


def netns_unavailable_reason() -> str | None:
    """Why the root tests cannot run here, or None: what the lab's data plane needs, and `bridge`."""
    from vpclab.dataplane.kernel import unavailable_reason

    if (why := unavailable_reason()) is not None:
        return why
    return None if shutil.which("bridge") else "the `bridge` command is missing (apt-get install iproute2)"


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done


@dataclass
class ScriptRun:
    returncode: int
    stdout: str
    stderr: str


class GuestRoot:
    """The emulated instance's private view of /etc, /usr/local and /run/systemd."""

    def __init__(self, base: Path, *, network_manager: bool = True, networkd_dispatcher: bool = True,
                 systemd_running: bool = False) -> None:
        self.base = base
        self.etc, self.local = base / "etc-upper", base / "local-upper"
        self.run_systemd = base / "run-systemd"
        for d in (self.etc, self.local, base / "etc-work", base / "local-work", self.run_systemd):
            d.mkdir(parents=True)
        (self.etc / "systemd/system/multi-user.target.wants").mkdir(parents=True)
        if network_manager:
            (self.etc / "NetworkManager/dispatcher.d").mkdir(parents=True)
        if networkd_dispatcher:
            (self.etc / "networkd-dispatcher/routable.d").mkdir(parents=True)
        if systemd_running:
            (self.run_systemd / "system").mkdir()

    def host_path(self, guest_path: str) -> Path:
        """Where a file the guest wrote under /etc or /usr/local lives on the host."""
        for prefix, upper in (("/etc/", self.etc), ("/usr/local/", self.local)):
            if guest_path.startswith(prefix):
                return upper / guest_path[len(prefix):]
        raise ValueError(f"{guest_path} is not under /etc or /usr/local")

    def wrap(self, netns: str, argv: Sequence[str]) -> list[str]:
        """argv run inside ``netns`` with this root's private mounts."""
        b = self.base
        mounts = (
            f"mount -t overlay egt-etc -o lowerdir=/etc,upperdir={b}/etc-upper,workdir={b}/etc-work /etc"
            f" && mount -t overlay egt-local -o lowerdir=/usr/local,upperdir={b}/local-upper,workdir={b}/local-work"
            " /usr/local"
            f" && if [ -d /run/systemd ]; then mount --bind {self.run_systemd} /run/systemd; fi"
        )
        return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                f'{mounts} && exec ip netns exec "$0" "$@"', netns, *argv]


class NetLab:
    """Namespaces named ``egt-<pid>-<n>-<short>``; close() removes exactly those."""

    def __init__(self, base: Path | None = None) -> None:
        self.prefix = f"egt-{os.getpid()}-{next(_COUNTER)}-"
        self._namespaces: list[str] = []
        self._procs: dict[str, list[subprocess.Popen]] = {}
        self._own_base = base is None
        self.base = Path(tempfile.mkdtemp(prefix=self.prefix)) if base is None else base

    # ------------------------------------------------------------------ namespaces and processes

    def name(self, short: str) -> str:
        return self.prefix + short

    def add_ns(self, short: str) -> str:
        full = self.name(short)
        _run(["ip", "netns", "add", full])
        self._namespaces.append(full)
        self.ip(short, "link", "set", "lo", "up")
        return full

    def del_ns(self, short: str) -> None:
        full = self.name(short)
        for proc in self._procs.pop(short, []):
            _stop(proc)
        if full in self._namespaces:
            _run(["ip", "netns", "del", full], check=False)
            self._namespaces.remove(full)

    def ip(self, short: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["ip", "-n", self.name(short), *args], check=check)

    def ip_json(self, short: str, *args: str) -> list:
        out = self.ip(short, "-j", *args).stdout.strip()
        return json.loads(out) if out else []

    def exec(self, short: str, *argv: str, check: bool = True, timeout: float = 30,
             **kw) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", self.name(short), *argv], check=check, timeout=timeout, **kw)

    def sysctl(self, short: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        self.exec(short, "/bin/sh", "-c", f"echo {value} > {path}")

    def read_sysctl(self, short: str, key: str) -> str:
        return self.exec(short, "cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip()

    def start(self, short: str, *argv: str) -> subprocess.Popen:
        """A long-running process in a namespace that prints one line when ready."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name(short), *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._procs.setdefault(short, []).append(proc)
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            _stop(proc)
            raise RuntimeError(f"{argv} did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        return proc

    def close(self) -> None:
        for short in list(self._procs):
            for proc in self._procs.pop(short):
                _stop(proc)
        for full in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", full], capture_output=True)
        self._namespaces.clear()
        if self._own_base:
            shutil.rmtree(self.base, ignore_errors=True)

    # ------------------------------------------------------------------ TCP probes

    def serve(self, short: str, port: int, mode: str) -> None:
        """A TCP server answering each connection with the peer's ("peer") or its own ("local") address."""
        self.start(short, sys.executable, "-c", _SERVER, str(port), mode)

    def connect(self, short: str, host: str, port: int, *, timeout: float = 1.5, bind: str | None = None) -> str | None:
        """The line the server sent, or None when the connection failed."""
        argv = [sys.executable, "-c", _CLIENT, host, str(port), str(timeout), *([bind] if bind else [])]
        out = self.exec(short, *argv, timeout=timeout + 10).stdout.strip()
        return out[3:] if out.startswith("OK ") else None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


class VSwitchLab(NetLab):
    """The vSwitch topology of the module docstring, with a guest that can be rebooted and hot-plugged."""

    NICS = {"eth0": ("p10", PRIMARY_MAC, PRIMARY_IP, 100), "eth1": ("p11", ENI_MAC, ENI_IP, 200)}

    def build(self, *, eni_configured: bool = True, eni_default: bool = True) -> VSwitchLab:
        self._build_router()
        self._build_inet()
        self.boot_guest(eni_configured=eni_configured, eni_default=eni_default)
        self.serve("inet", WHOAMI_PORT, "peer")
        return self

    def _build_router(self) -> None:
        self.add_ns("router")
        self.ip("router", "link", "add", "br0", "type", "bridge")
        self.ip("router", "addr", "add", f"{GATEWAY}/{PREFIX}", "dev", "br0")
        self.ip("router", "link", "set", "br0", "up")
        self.sysctl("router", "net.ipv4.ip_forward", "1")
        self.sysctl("router", "net.ipv4.conf.br0.arp_ignore", "1")
        for _port, mac, addr, _metric in self.NICS.values():
            self.ip("router", "neigh", "replace", addr, "lladdr", mac, "dev", "br0", "nud", "permanent")
        sdn = []
        for port, mac, addr, _metric in self.NICS.values():
            sdn += [
                f'iifname "{port}" ether saddr != {mac} counter drop',
                f'iifname "{port}" ether type ip ip saddr != {addr} counter drop',
                f'iifname "{port}" ether type arp arp saddr ip != {addr} counter drop',
            ]
        ruleset = "\n".join([
            "table bridge egt_sdn {",
            "  chain port_in {",
            "    type filter hook prerouting priority 0; policy accept;",
            *[f"    {r}" for r in sdn],
            "  }",
            "}",
            "table ip egt_nat {",
            "  chain pre {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            f"    ip daddr {EIP} dnat to {ENI_IP}",
            "  }",
            "  chain post {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f'    oifname "wan0" ip saddr {PRIMARY_IP} snat to {SNAT_IP}',
            f'    oifname "wan0" ip saddr {ENI_IP} snat to {EIP}',
            "  }",
            "}",
        ])
        self.exec("router", "nft", "-f", "-", input=ruleset + "\n")

    def _build_inet(self) -> None:
        self.add_ns("inet")
        self.ip("router", "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", self.name("inet"))
        self.ip("router", "addr", "add", "198.51.100.1/24", "dev", "wan0")
        self.ip("router", "link", "set", "wan0", "up")
        self.ip("inet", "addr", "add", f"{INET_IP}/24", "dev", "eth0")
        self.ip("inet", "link", "set", "eth0", "up")
        self.ip("inet", "route", "add", "203.0.113.0/24", "via", "198.51.100.1")

    def boot_guest(self, *, eni_configured: bool = True, eni_default: bool = True, eni_present: bool = True) -> None:
        """(Re)create the guest as its image boots it: eth0 .10 (default metric 100) and, like the
        seed's image, eth1 .11 with a default route of metric 200; strict rp_filter everywhere."""
        self.add_ns("guest")
        for key in ("all", "default"):
            self.sysctl("guest", f"net.ipv4.conf.{key}.rp_filter", "1")
        self.plug_nic("eth0", configure=True, default=True)
        if eni_present:
            self.plug_nic("eth1", configure=eni_configured, default=eni_default)
        self.serve("guest", SERVICE_PORT, "local")

    def plug_nic(self, nic: str, *, name: str | None = None, configure: bool = True, default: bool = True) -> None:
        """Attach NIC ``nic`` (eth0 or eth1) to the guest, optionally under another name (hot-plug)."""
        port, mac, addr, metric = self.NICS[nic]
        name = name or nic
        self.ip("router", "link", "add", port, "type", "veth", "peer", "name", name, "netns", self.name("guest"))
        self.ip("router", "link", "set", port, "master", "br0")
        self.ip("router", "link", "set", port, "type", "bridge_slave", "learning", "off")
        self.ip("router", "link", "set", port, "up")
        _run(["bridge", "-n", self.name("router"), "fdb", "replace", mac, "dev", port, "master", "static"])
        self.ip("guest", "link", "set", name, "address", mac)
        self.sysctl("guest", f"net.ipv4.conf.{name}.rp_filter", "1")
        if configure:
            self.ip("guest", "link", "set", name, "up")
            self.ip("guest", "addr", "add", f"{addr}/{PREFIX}", "dev", name)
            if default:
                self.ip("guest", "route", "add", "default", "via", GATEWAY, "dev", name, "metric", str(metric))

    def reboot_guest(self, **boot: bool) -> None:
        """Power-cycle: the guest namespace (and its NICs) goes away and comes back as the image boots it."""
        self.del_ns("guest")
        deadline = time.monotonic() + 10
        while self.ip("router", "link", "show", "p10", check=False).returncode == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("old guest NICs did not go away")
            time.sleep(0.05)
        self.boot_guest(**boot)

    # ------------------------------------------------------------------ guest-side helpers

    def inbound(self, timeout: float = 1.5) -> str | None:
        """Connect from the internet to the EIP; the guest answers with the address that was hit."""
        return self.connect("inet", EIP, SERVICE_PORT, timeout=timeout)

    def egress_ip(self, bind: str | None = None) -> str | None:
        """A new outbound connection from the guest; the internet host answers with the source it saw."""
        return self.connect("guest", INET_IP, WHOAMI_PORT, bind=bind)

    def sdn_drops(self) -> int:
        """Packets the router's per-port source check dropped so far."""
        data = json.loads(self.exec("router", "nft", "-j", "list", "table", "bridge", "egt_sdn").stdout)
        total = 0
        for item in data.get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    total += expr["counter"]["packets"]
        return total

    def kernel_snapshot(self) -> dict:
        """The guest's links, addresses, IPv4 routes (all tables), rules and rp_filter settings."""
        links = sorted((link["ifname"], link.get("address"), tuple(sorted(link.get("flags", []))), link.get("mtu"))
                       for link in self.ip_json("guest", "link", "show"))
        addrs = sorted((a["ifname"], i["local"], i["prefixlen"]) for a in self.ip_json("guest", "-4", "addr", "show")
                       for i in a.get("addr_info", []))
        routes = sorted(json.dumps(r, sort_keys=True)
                        for r in self.ip_json("guest", "-4", "route", "show", "table", "all"))
        rules = sorted(json.dumps(r, sort_keys=True) for r in self.ip_json("guest", "-4", "rule", "show"))
        names = [name for name, *_ in links]
        sysctls = {f"{d}.{k}": self.read_sysctl("guest", f"net.ipv4.conf.{d}.{k}")
                   for d in ["all", "default", *names] for k in ("rp_filter", "arp_ignore", "arp_announce")}
        return {"links": links, "addrs": addrs, "routes": routes, "rules": rules, "sysctls": sysctls}


class Guest:
    """Runs scripts inside the lab's guest namespace with a private GuestRoot."""

    def __init__(self, lab: VSwitchLab, root: GuestRoot) -> None:
        self.lab, self.root = lab, root
        self._n = itertools.count()

    def run(self, argv: Sequence[str], *, timeout: float = 60) -> ScriptRun:
        done = subprocess.run(self.root.wrap(self.lab.name("guest"), argv), capture_output=True, text=True,
                              timeout=timeout, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        return ScriptRun(done.returncode, done.stdout, done.stderr)

    def run_script(self, text: str, *, timeout: float = 60) -> ScriptRun:
        path = self.root.base / f"script-{next(self._n)}.sh"
        path.write_text(text)
        return self.run(["/bin/sh", str(path)], timeout=timeout)

    def popen_script(self, text: str) -> subprocess.Popen:
        path = self.root.base / f"script-{next(self._n)}.sh"
        path.write_text(text)
        return subprocess.Popen(self.root.wrap(self.lab.name("guest"), ["/bin/sh", str(path)]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})

    def files(self) -> list[str]:
        """Everything under the directories the script may write, as the guest sees it (with mtimes)."""
        dirs = ("/etc/egressctl /usr/local/lib/egressctl /etc/systemd/system /etc/NetworkManager"
                " /etc/networkd-dispatcher")
        out = self.run(["/bin/sh", "-c", f"find {dirs} -printf '%p %y %m %l %s %T@\\n' 2>/dev/null | sort"]).stdout
        return out.splitlines()


@contextlib.contextmanager
def vswitch_lab(**build: bool) -> Iterator[VSwitchLab]:
    lab = VSwitchLab()
    try:
        yield lab.build(**build)
    finally:
        lab.close()
