"""The kernel side of the data plane: namespaces, links, addresses, routes and nftables that make
the emulated VPC carry real packets.

    internet bridge "inet" 192.0.2.0/24 (in the edge):  echo host .10, operator host .20
    edge            1:1 NAT for every fixed public IP and InUse EIP (nft maps), routes to NAT gateways
    router per VPC  a bridge per vSwitch (gateway = broadcast - 2), static neighbours and static FDB,
                    per-port source check (MAC and IP), the VPC route table, and the precedence rule:
                    a source with a 1:1 mapping goes to the edge, everything else follows 0.0.0.0/0
    NAT gateway     SNAT per SNAT entry (most specific source CIDR first)
    instance        one namespace, one NIC per attached ENI (eth<device index>, the ENI's MAC)

Transit links use 100.64.0.0/10 (shared address space) and exist only inside the lab's namespaces.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field

from . import kernel
from .model import Desired, InstanceSpec, NicSpec

INET_NET = "192.0.2.0/24"
EDGE_INET_IP = "192.0.2.1"
ECHO_IP = "192.0.2.10"
OPERATOR_IP = "192.0.2.20"
METADATA_IP = "100.100.100.200"
PUBLIC_TABLE = 100  # router: where sources with a 1:1 public mapping are routed
GATEWAY_MAC = "ee:ff:ff:ff:ff:ff"  # what guests see as the vSwitch gateway's MAC on Alibaba Cloud
BRIDGE_PORTS = 1000  # a Linux bridge takes at most 1024 ports; a bigger vSwitch chains overflow bridges


@dataclass
class Indexes:
    """Small stable numbers for names and transit addresses (persisted in the lab's registry)."""

    vpcs: dict[str, int] = field(default_factory=dict)
    nats: dict[str, int] = field(default_factory=dict)
    vswitches: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)

    def of(self, table: str, key: str) -> int:
        t: dict[str, int] = getattr(self, table)
        if key not in t:
            t[key] = max(t.values(), default=-1) + 1
        return t[key]


@dataclass
class Applied:
    vpcs: dict[str, object] = field(default_factory=dict)
    vswitches: dict[str, object] = field(default_factory=dict)
    nats: dict[str, object] = field(default_factory=dict)
    instances: dict[str, InstanceSpec] = field(default_factory=dict)
    mapping_rules: dict[str, set[str]] = field(default_factory=dict)  # vpc -> private IPs with a rule
    edge_maps: dict[str, str] = field(default_factory=dict)
    sdn: dict[str, tuple[tuple[str, str, str], ...]] = field(default_factory=dict)  # vpc -> ports
    routes: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=dict)  # vpc -> routes


class Topology:
    def __init__(self, prefix: str, idx: Indexes):
        self.p = prefix
        self.idx = idx
        self.applied = Applied()
        self._ports: dict[str, list[int]] = {}  # vswitch -> ports per bridge (the first is the gateway's)
        self._port_bridge: dict[str, tuple[str, int]] = {}  # port -> (vswitch, bridge number)

    # -- names ----------------------------------------------------------------------------------
    @property
    def edge(self) -> str:
        return f"{self.p}-edge"

    @property
    def echo(self) -> str:
        return f"{self.p}-echo"

    @property
    def operator(self) -> str:
        return f"{self.p}-op"

    def router(self, vpc: str) -> str:
        return f"{self.p}-r{self.idx.of('vpcs', vpc)}"

    def nat(self, nat_id: str) -> str:
        return f"{self.p}-n{self.idx.of('nats', nat_id)}"

    def inst(self, iid: str) -> str:
        return f"{self.p}-i{self.idx.of('instances', iid)}"

    def bridge(self, vsw: str) -> str:
        return f"bs{self.idx.of('vswitches', vsw)}"

    def port(self, iid: str, dev: int) -> str:
        return f"i{self.idx.of('instances', iid)}d{dev}"

    def namespaces(self) -> list[str]:
        names = [self.edge, self.echo, self.operator]
        names += [f"{self.p}-r{i}" for i in self.idx.vpcs.values()]
        names += [f"{self.p}-n{i}" for i in self.idx.nats.values()]
        names += [f"{self.p}-i{i}" for i in self.idx.instances.values()]
        return names

    # -- the fixed part: edge, internet, echo and operator hosts ----------------------------------
    def build_globals(self) -> None:
        for ns in (self.edge, self.echo, self.operator):
            kernel.ns_add(ns)
        kernel.sysctl(self.edge, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                      "net.ipv4.conf.default.rp_filter=0")
        cmds = ["link add inet type bridge", f"addr add {EDGE_INET_IP}/24 dev inet", "link set inet up"]
        kernel.ip_batch(self.edge, cmds)
        for host, ip, peer in ((self.echo, ECHO_IP, "hecho"), (self.operator, OPERATOR_IP, "hop")):
            kernel.ip(self.edge, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", host)
            kernel.ip_batch(self.edge, [f"link set {peer} master inet", f"link set {peer} up"])
            kernel.ip_batch(host, [f"addr add {ip}/24 dev eth0", "link set eth0 up",
                                   f"route add default via {EDGE_INET_IP}"])
        kernel.nft(self.edge, "\n".join([
            "table ip vlab_edge {",
            "  map pub2priv { type ipv4_addr : ipv4_addr; }",
            "  map priv2pub { type ipv4_addr : ipv4_addr; }",
            "  chain pre { type nat hook prerouting priority dstnat; policy accept;",
            "    dnat to ip daddr map @pub2priv",
            "  }",
            "  chain post { type nat hook postrouting priority srcnat; policy accept;",
            '    oifname "inet" snat to ip saddr map @priv2pub',
            "  }",
            "}", ""]))

    # -- reconcile ---------------------------------------------------------------------------------
    def apply(self, d: Desired) -> dict[str, list[str]]:
        """Make the kernel match ``d``; returns what changed (for events and tests)."""
        changed: dict[str, list[str]] = {"instances": [], "booted": [], "hotplug": [], "unplug": []}
        for vpc_id, spec in d.vpcs.items():
            if self.applied.vpcs.get(vpc_id) != spec:
                self._vpc(vpc_id, spec, first=vpc_id not in self.applied.vpcs)
                self.applied.vpcs[vpc_id] = spec
        for vsw_id, spec in d.vswitches.items():
            if vsw_id not in self.applied.vswitches:
                r = self.router(spec.vpc)
                b = self.bridge(vsw_id)
                # a fixed address: a bridge without one takes its lowest port's MAC, so plugging a NIC
                # would change the gateway's MAC under every guest (and flush the static neighbours)
                kernel.ip_batch(r, [f"link add {b} address {GATEWAY_MAC} type bridge",
                                    f"link set {b} type bridge stp_state 0",
                                    f"addr add {spec.gateway}/{spec.prefix} dev {b}", f"link set {b} up"])
                kernel.sysctl(r, f"net.ipv4.conf.{b}.arp_ignore=1")
                self.applied.vswitches[vsw_id] = spec
        for nat_id, spec in d.nats.items():
            if self.applied.nats.get(nat_id) != spec:
                self._nat(nat_id, spec, first=nat_id not in self.applied.nats)
                self.applied.nats[nat_id] = spec
        for vpc_id, spec in d.vpcs.items():
            self._vpc_default(vpc_id, spec, d)
        for iid, spec in d.instances.items():
            old = self.applied.instances.get(iid)
            if old != spec:
                self._instance(spec, old, changed)
                self.applied.instances[iid] = spec
        for iid in [i for i in self.applied.instances if i not in d.instances]:
            kernel.ns_del(self.inst(iid))
            for nic in self.applied.instances[iid].nics:
                vpc = self.applied.instances[iid].vpc
                self._release_port(self.port(iid, nic.dev))
                if vpc in d.vpcs:
                    kernel.ip(self.router(vpc), "neigh", "del", nic.ip, "dev", self.bridge(nic.vswitch), check=False)
            del self.applied.instances[iid]
        self._sdn(d)
        self._mappings(d)
        return changed

    def _vpc(self, vpc_id: str, spec: object, first: bool) -> None:
        r = self.router(vpc_id)
        i = self.idx.of("vpcs", vpc_id)
        if first:
            kernel.ns_add(r)
            kernel.sysctl(r, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                          "net.ipv4.conf.default.rp_filter=0")
            kernel.ip(self.edge, "link", "add", f"r{i}", "type", "veth", "peer", "name", "edge", "netns", r)
            kernel.ip_batch(self.edge, [f"addr add 100.64.{i}.1/30 dev r{i}", f"link set r{i} up"])
            kernel.ip_batch(r, [f"addr add 100.64.{i}.2/30 dev edge", "link set edge up",
                                f"addr add {METADATA_IP}/32 dev lo",
                                f"route add default via 100.64.{i}.1 dev edge table {PUBLIC_TABLE}"])
        cidr = spec.cidr  # type: ignore[attr-defined]
        kernel.ip_batch(self.edge, [f"route replace {cidr} via 100.64.{i}.2 dev r{i}"])
        # traffic inside the VPC never takes the public path, whatever its source
        kernel.ip_batch(r, [f"rule add to {cidr} lookup main priority 100"], force=True)
        kernel.ip_batch(r, [f"rule add to {METADATA_IP} lookup main priority 100"], force=True)

    def _nat(self, nat_id: str, spec: object, first: bool) -> None:
        n = self.nat(nat_id)
        j = self.idx.of("nats", nat_id)
        vpc = spec.vpc  # type: ignore[attr-defined]
        r = self.router(vpc)
        if first:
            kernel.ns_add(n)
            kernel.sysctl(n, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                          "net.ipv4.conf.default.rp_filter=0")
            kernel.ip(r, "link", "add", f"ngw{j}", "type", "veth", "peer", "name", "lan", "netns", n)
            kernel.ip_batch(r, [f"addr add 100.65.{j}.1/30 dev ngw{j}", f"link set ngw{j} up"])
            kernel.ip(self.edge, "link", "add", f"n{j}", "type", "veth", "peer", "name", "wan", "netns", n)
            kernel.ip_batch(self.edge, [f"addr add 100.66.{j}.1/30 dev n{j}", f"link set n{j} up"])
            kernel.ip_batch(n, [f"addr add 100.65.{j}.2/30 dev lan", "link set lan up",
                                f"addr add 100.66.{j}.2/30 dev wan", "link set wan up",
                                f"route add {self.applied.vpcs[vpc].cidr} via 100.65.{j}.1 dev lan",  # type: ignore
                                f"route add default via 100.66.{j}.1 dev wan"])
        old = self.applied.nats.get(nat_id)
        old_eips = set(getattr(old, "eips", ()))
        new_eips = set(spec.eips)  # type: ignore[attr-defined]
        cmds = [f"route del {ip}/32" for ip in old_eips - new_eips]
        cmds += [f"route replace {ip}/32 via 100.66.{j}.2 dev n{j}" for ip in new_eips]
        kernel.ip_batch(self.edge, cmds, force=True)
        rules = [f'    oifname "wan" ip saddr {cidr} snat to {ip}' for cidr, ip in spec.snat]  # type: ignore
        kernel.nft(n, "\n".join(["table ip vlab_snat", "delete table ip vlab_snat", "table ip vlab_snat {",
                                 "  chain post { type nat hook postrouting priority srcnat; policy accept;",
                                 *rules, "  }", "}", ""]))

    def _vpc_default(self, vpc_id: str, spec: object, d: Desired) -> None:
        r = self.router(vpc_id)
        nat_id = spec.default_nat  # type: ignore[attr-defined]
        nat = d.nats.get(nat_id) if nat_id else None
        want = f"default via 100.65.{self.idx.of('nats', nat_id)}.2" if nat is not None and nat.available else ""
        routes = spec.routes  # type: ignore[attr-defined]
        old = self.applied.routes.get(vpc_id)
        if old == (want, routes):
            return
        if want:
            kernel.ip_batch(r, [f"route replace {want}"])
        else:
            kernel.ip_batch(r, ["route del default"], force=True)
        gone = [f"route del {dest}" for dest, _ in (old[1] if old else ()) if dest not in dict(routes)]
        kernel.ip_batch(r, gone + [f"route replace {dest} via {via}" for dest, via in routes], force=True)
        self.applied.routes[vpc_id] = (want, routes)

    # -- instances -----------------------------------------------------------------------------------
    def _instance(self, spec: InstanceSpec, old: InstanceSpec | None, changed: dict[str, list[str]]) -> None:
        ns = self.inst(spec.instance_id)
        r = self.router(spec.vpc)
        if old is None:
            kernel.ns_add(ns)
            boot = spec.boot_dict()
            rp = int(boot.get("rp_filter", 1))
            kernel.sysctl(ns, f"net.ipv4.conf.all.rp_filter={rp}", f"net.ipv4.conf.default.rp_filter={rp}")
        old_nics = {n.eni_id: n for n in (old.nics if old else ())}
        new_nics = {n.eni_id: n for n in spec.nics}
        for eni_id, nic in old_nics.items():
            if eni_id not in new_nics:
                port = self.port(spec.instance_id, nic.dev)
                kernel.ip(r, "link", "del", port, check=False)
                self._release_port(port)
                kernel.ip(r, "neigh", "del", nic.ip, "dev", self.bridge(nic.vswitch), check=False)
                changed["unplug"].append(eni_id)
        plugged = []
        for eni_id, nic in new_nics.items():
            if eni_id not in old_nics:
                self._plug(spec, nic, ns, r)
                plugged.append(nic)
        was_running = bool(old and old.running)
        if spec.running and not was_running:
            self.boot(spec)
            changed["booted"].append(spec.instance_id)
        elif not spec.running and (was_running or old is None):
            kernel.ip_batch(ns, [f"link set eth{n.dev} down" for n in spec.nics], force=True)
        elif spec.running:
            for nic in plugged:  # hot-plug into a running guest: the image configures the new NIC
                self._configure_secondary(spec, nic, ns)
                changed["hotplug"].append(nic.eni_id)
        changed["instances"].append(spec.instance_id)

    def _release_port(self, port: str) -> None:
        """The port is gone: its bridge has room for one more."""
        vsw_n = self._port_bridge.pop(port, None)
        if vsw_n is not None:
            self._ports[vsw_n[0]][vsw_n[1]] -= 1

    def _bridge_with_room(self, vsw: str, r: str) -> tuple[str, int]:
        counts = self._ports.setdefault(vsw, [0])
        for n, c in enumerate(counts):
            if c < BRIDGE_PORTS:
                return (self.bridge(vsw) if n == 0 else f"{self.bridge(vsw)}o{n}"), n
        n = len(counts)
        base, extra = self.bridge(vsw), f"{self.bridge(vsw)}o{n}"
        # an overflow bridge on the same L2 segment, joined to the first by a veth pair that learns
        kernel.ip_batch(r, [f"link add {extra} address {_overflow_mac(vsw, n)} type bridge",
                            f"link set {extra} type bridge stp_state 0",
                            f"link add {base}l{n} type veth peer name {base}u{n}",
                            f"link set {base}l{n} master {base}", f"link set {base}u{n} master {extra}",
                            f"link set {base}l{n} up", f"link set {base}u{n} up", f"link set {extra} up"])
        counts.append(0)
        return extra, n

    def _plug(self, spec: InstanceSpec, nic: NicSpec, ns: str, r: str) -> None:
        port = self.port(spec.instance_id, nic.dev)
        b, n = self._bridge_with_room(nic.vswitch, r)
        self._ports[nic.vswitch][n] += 1
        self._port_bridge[port] = (nic.vswitch, n)
        kernel.ip(r, "link", "add", port, "type", "veth", "peer", "name", f"eth{nic.dev}", "netns", ns)
        kernel.ip_batch(ns, [f"link set eth{nic.dev} address {nic.mac}"])
        kernel.ip_batch(r, [f"link set {port} master {b}", f"link set {port} type bridge_slave learning off",
                            f"link set {port} up",
                            f"neigh replace {nic.ip} lladdr {nic.mac} dev {self.bridge(nic.vswitch)} nud permanent"])
        kernel.run(["bridge", "-n", r, "fdb", "replace", nic.mac, "dev", port, "master", "static"])

    def boot(self, spec: InstanceSpec) -> None:
        """What the image does at boot: forget everything, then configure the NICs it knows."""
        ns = self.inst(spec.instance_id)
        cmds = ["rule flush", "route flush table main"]
        for nic in spec.nics:
            cmds += [f"addr flush dev eth{nic.dev}", f"link set eth{nic.dev} up"]
        kernel.ip_batch(ns, cmds, force=True)
        # `ip rule flush` keeps only the local rule: put the main and default lookups back
        kernel.ip_batch(ns, ["rule add priority 32766 lookup main", "rule add priority 32767 lookup default"],
                        force=True)
        _flush_other_tables(ns)
        primary = next((n for n in spec.nics if n.primary), None)
        if primary is not None:
            kernel.ip_batch(ns, [f"addr add {primary.ip}/{primary.prefix} dev eth{primary.dev}",
                                 f"route add default via {primary.gateway} dev eth{primary.dev} metric 100"])
        for nic in spec.nics:
            if not nic.primary:
                self._configure_secondary(spec, nic, ns)

    def _configure_secondary(self, spec: InstanceSpec, nic: NicSpec, ns: str) -> None:
        boot = spec.boot_dict()
        mode = boot.get("secondary_nics", "default-route")
        if mode == "none":
            return
        cmds = [f"link set eth{nic.dev} up", f"addr replace {nic.ip}/{nic.prefix} dev eth{nic.dev}"]
        if mode == "default-route":
            metric = int(boot.get("secondary_metric", 200)) + max(nic.dev - 1, 0)
            cmds.append(f"route replace default via {nic.gateway} dev eth{nic.dev} metric {metric}")
        kernel.ip_batch(ns, cmds, force=True)

    # -- SDN and the 1:1 mappings --------------------------------------------------------------------
    def _sdn(self, d: Desired) -> None:
        by_vpc: dict[str, list[tuple[str, str, str]]] = {}
        for spec in d.instances.values():
            for nic in spec.nics:
                by_vpc.setdefault(spec.vpc, []).append((self.port(spec.instance_id, nic.dev), nic.mac, nic.ip))
        for vpc_id in d.vpcs:
            ports = tuple(sorted(by_vpc.get(vpc_id, [])))
            if self.applied.sdn.get(vpc_id) == ports:
                continue
            macs = ", ".join(f'"{p}" . {m}' for p, m, _ in ports)
            ips = ", ".join(f'"{p}" . {ip}' for p, _, ip in ports)
            lines = ["table bridge vlab_sdn", "delete table bridge vlab_sdn", "table bridge vlab_sdn {",
                     "  set port_mac { type ifname . ether_addr; " + (f"elements = {{ {macs} }}; " if macs else "")
                     + "}",
                     "  set port_ip { type ifname . ipv4_addr; " + (f"elements = {{ {ips} }}; " if ips else "") + "}",
                     "  chain in { type filter hook prerouting priority 0; policy accept;",
                     '    iifname "i*" iifname . ether saddr != @port_mac counter drop',
                     '    iifname "i*" ether type ip iifname . ip saddr != @port_ip counter drop',
                     '    iifname "i*" ether type arp iifname . arp saddr ip != @port_ip counter drop',
                     "  }", "}", ""]
            kernel.nft(self.router(vpc_id), "\n".join(lines))
            self.applied.sdn[vpc_id] = ports

    def _mappings(self, d: Desired) -> None:
        by_vpc: dict[str, set[str]] = {v: set() for v in d.vpcs}
        for priv, (_pub, vpc) in d.mappings.items():
            by_vpc.setdefault(vpc, set()).add(priv)
        for vpc_id, privs in by_vpc.items():
            if vpc_id not in d.vpcs:
                continue
            have = self.applied.mapping_rules.get(vpc_id, set())
            cmds = [f"rule del from {ip} lookup {PUBLIC_TABLE} priority 1000" for ip in sorted(have - privs)]
            cmds += [f"rule add from {ip} lookup {PUBLIC_TABLE} priority 1000" for ip in sorted(privs - have)]
            kernel.ip_batch(self.router(vpc_id), cmds, force=True)
            self.applied.mapping_rules[vpc_id] = set(privs)
        pub2priv = ", ".join(f"{pub} : {priv}" for priv, (pub, _) in sorted(d.mappings.items()))
        priv2pub = ", ".join(f"{priv} : {pub}" for priv, (pub, _) in sorted(d.mappings.items()))
        text = "\n".join(["flush map ip vlab_edge pub2priv", "flush map ip vlab_edge priv2pub",
                          *([f"add element ip vlab_edge pub2priv {{ {pub2priv} }}",
                             f"add element ip vlab_edge priv2pub {{ {priv2pub} }}"] if pub2priv else []), ""])
        if self.applied.edge_maps.get("maps") != text:
            kernel.nft(self.edge, text)
            self.applied.edge_maps["maps"] = text


def _flush_other_tables(ns: str) -> None:
    out = kernel.run(["ip", "-n", ns, "-4", "route", "show", "table", "all"], check=False).stdout
    tables = set()
    for line in out.splitlines():
        parts = line.split()
        if "table" in parts:
            t = parts[parts.index("table") + 1]
            if t not in ("local", "main", "default", "255", "254", "253"):
                tables.add(t)
    kernel.ip_batch(ns, [f"route flush table {t}" for t in sorted(tables)], force=True)


def _overflow_mac(vsw: str, n: int) -> str:
    """A fixed, locally administered address for an overflow bridge (same reason as GATEWAY_MAC)."""
    h = hashlib.sha256(f"{vsw}/{n}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


def vpc_cidr_of(d: Desired, vpc_id: str) -> ipaddress.IPv4Network:
    return ipaddress.ip_network(d.vpcs[vpc_id].cidr)  # type: ignore[return-value]
