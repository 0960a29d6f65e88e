"""Verification: the control plane says the migration is in place, the guest's traffic really leaves
through a SNAT IP of the NAT gateway that covers it, and the EIP really answers from outside.

The same code path runs against the real cloud and vpclab; only the vantage point (where egressctl
runs) and the echo URL differ.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import egress, inventory
from .cloud import Cloud
from .guest.probe import parse_probe, render_probe
from .guest.runners import GuestJob, GuestOutcome, GuestRunner

CHECKS = ("control", "egress", "inbound")


@dataclass
class Check:
    ok: bool | None  # None = skipped
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, **self.extra}


def tcp_check(ip: str, port: int, timeout_s: float = 5.0) -> Check:
    t0 = time.monotonic()
    try:
        with socket.create_connection((ip, port), timeout=timeout_s) as s:
            s.settimeout(1.5)
            try:
                banner = s.recv(200).decode("utf-8", "replace").strip()
            except OSError:
                banner = ""
        ms = round((time.monotonic() - t0) * 1000, 1)
        return Check(True, f"tcp {ip}:{port} connected in {ms} ms", {"banner": banner, "connect_ms": ms})
    except OSError as e:
        return Check(False, f"tcp {ip}:{port}: {e.strerror or type(e).__name__}")


def control_check(inv: inventory.Inventory, a: egress.Analysis) -> tuple[Check, list[str]]:
    i = a.instance
    problems = []
    if i.public_ip:
        problems.append(f"the primary NIC still has the fixed public IP {i.public_ip}")
    if i.eip_ip:
        problems.append(f"the instance still has the EIP {i.eip_ip} on its primary NIC")
    on_eni = [n for n in inv.nics_of(i.instance_id) if n.eni_type == "Secondary" and n.eip_allocation_id]
    eip = inv.eips.get(on_eni[0].eip_allocation_id) if on_eni else None
    if eip is None:
        problems.append("no EIP on a secondary ENI")
    elif eip.status != "InUse" or eip.instance_type != "NetworkInterface" or eip.mode not in ("NAT", ""):
        problems.append(f"EIP {eip.allocation_id} is {eip.status}/{eip.instance_type}/{eip.mode}, expected "
                        "InUse/NetworkInterface/NAT")
    snat_ips: list[str] = []
    if a.snat is None:
        problems.append("no SNAT path covers it (outbound would have no internet)")
    else:
        snat_ips = list(a.snat[0].snat_ips)
    extra = {"eip": eip.ip if eip else None, "eni_id": on_eni[0].eni_id if on_eni else None,
             "snat_ips": snat_ips, "nat_gateway_id": a.snat[1].nat_gateway_id if a.snat else None}
    if problems:
        return Check(False, "; ".join(problems), extra), snat_ips
    return Check(True, f"EIP {extra['eip']} InUse on {extra['eni_id']}, no public IP on the primary NIC, SNAT via "
                 f"{extra['nat_gateway_id']}", extra), snat_ips


def run_probes(runner: GuestRunner, jobs: list[GuestJob], timeout_s: float, interval_s: float
               ) -> dict[str, GuestOutcome]:
    token = uuid.uuid4().hex[:12]
    handles = {runner.start(j, f"egv-{token}-{j.instance_id}"[:64]): j.instance_id for j in jobs}
    results: dict[str, GuestOutcome] = {}
    deadline = time.monotonic() + timeout_s
    pending = set(handles)
    while pending and time.monotonic() < deadline:
        time.sleep(interval_s)
        for h, outcome in runner.poll(sorted(pending)).items():
            if outcome is not None:
                results[handles[h]] = outcome
                pending.discard(h)
    for h in pending:
        results[handles[h]] = GuestOutcome(False, "Timeout", None, f"no answer from the guest in {timeout_s:.0f} s")
    return results


def verify(cloud: Cloud, region: str, instance_ids: list[str], runner: GuestRunner | None, *,
           echo_url: str, ports: list[int], checks: tuple[str, ...] = CHECKS, timeout_s: float = 180,
           interval_s: float = 1.0) -> list[dict[str, Any]]:
    inv = inventory.read(cloud, region, instance_ids=instance_ids)
    rows: dict[str, dict[str, Any]] = {}
    expected: dict[str, list[str]] = {}
    for iid in instance_ids:
        inst = inv.instances.get(iid)
        if inst is None:
            rows[iid] = {"instance_id": iid, "name": "", "ok": False,
                         "checks": {"control": Check(False, "no such instance").to_dict()}}
            continue
        a = egress.analyze(inv, inst)
        ctl, snat_ips = control_check(inv, a)
        expected[iid] = snat_ips
        # where the internet reaches it now: the EIP on its ENI, or (not migrated yet) its own public IP
        rows[iid] = {"instance_id": iid, "name": inst.name, "checks": {},
                     "inbound_ip": ctl.extra.get("eip") or a.inbound_ip}
        rows[iid]["checks"]["control"] = ctl.to_dict() if "control" in checks else Check(None, "skipped").to_dict()
    if "egress" in checks and runner is not None:
        probe = render_probe(echo_url)
        jobs = [GuestJob(iid, None, "probe", host=rows[iid].get("inbound_ip") or "", script=probe)
                for iid in rows if iid in inv.instances]
        outcomes = run_probes(runner, jobs, timeout_s, interval_s) if jobs else {}
        for iid, outcome in outcomes.items():
            seen = parse_probe(outcome.output) if outcome.output else None
            want = expected.get(iid, [])
            if not outcome.ok and seen is None:
                c = Check(False, f"the probe failed on the guest: {outcome.summary()}")
            elif seen is None:
                c = Check(False, "the echo service's answer had no IPv4 address")
            else:
                c = Check(seen in want, f"egress seen as {seen}; SNAT IPs of the covering NAT gateway: "
                          f"{', '.join(want) or 'none'}", {"egress_ip": seen, "expected": want})
            rows[iid]["checks"]["egress"] = c.to_dict()
    elif "egress" in checks:
        for r in rows.values():
            r["checks"]["egress"] = Check(None, "skipped: no guest runner").to_dict()
    for r in rows.values():
        if "inbound" not in checks:
            continue
        ip = r.get("inbound_ip")
        if not ip:
            r["checks"]["inbound"] = Check(False, "no EIP to connect to").to_dict()
            continue
        results = [tcp_check(ip, p) for p in ports]
        r["checks"]["inbound"] = Check(all(x.ok for x in results), "; ".join(x.detail for x in results),
                                       {"ports": {str(p): x.to_dict() for p, x in zip(ports, results,
                                                                                     strict=True)}}).to_dict()
    for r in rows.values():
        r["ok"] = all(c["ok"] is not False for c in r["checks"].values()) and any(
            c["ok"] for c in r["checks"].values())
    return [rows[i] for i in instance_ids]
