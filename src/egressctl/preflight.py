"""Preflight checks (DESIGN §2.3): every reason an instance cannot be migrated safely with the
options given, each a clear sentence, and the option that would lift it when there is one.
Nothing here changes the cloud."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timezone

from .egress import Analysis, Reason
from .inventory import Inventory
from .knowledge import hot_pluggable


@dataclass(frozen=True)
class Options:
    allow_billing_change: bool = False
    allow_stop: bool = False
    inbound_ports: tuple[int, ...] = (22,)
    guest: str = "cloud-assistant"  # cloud-assistant | ssh | print
    order: str = "guest-first"  # guest-first | seed (the seed's order, for comparisons)


def _expires_within_24h(expired: str) -> bool:
    try:
        t = datetime.strptime(expired, "%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return False
    return (t - datetime.now(timezone.utc)).total_seconds() < 86400


def _port_allowed(rules: list[dict[str, str]], port: int) -> bool:
    best: tuple[int, bool] | None = None
    for r in rules:
        if r["protocol"] not in ("tcp", "all"):
            continue
        try:
            lo, hi = (int(x) for x in r["ports"].split("/"))
        except ValueError:
            continue
        if r["protocol"] == "tcp" and (lo, hi) != (-1, -1) and not lo <= port <= hi:
            continue
        src = r["source"] or ""
        if src and src != "0.0.0.0/0" and ipaddress.ip_network(src, strict=False).prefixlen > 0:
            continue  # the check is for inbound from anywhere (the operator's vantage point is unknown)
        prio = int(r["priority"] or 1)
        accept = r["policy"] != "drop"
        if best is None or prio < best[0] or (prio == best[0] and not accept):
            best = (prio, accept)
    return bool(best and best[1])


def needs_billing_change(inst_charge: str, internet_charge: str) -> bool:
    """Under the current rule a subscription instance converts only with pay-by-traffic bandwidth
    (research/aliyun-api.md §3.10); otherwise it must become pay-as-you-go first."""
    return inst_charge == "PrePaid" and internet_charge != "PayByTraffic"


def check(inv: Inventory, a: Analysis, opts: Options) -> list[Reason]:
    """Blocking reasons for a migration candidate under these options (empty = safe to plan)."""
    i = a.instance
    out: list[Reason] = [r for r in a.reasons if r.code == "no_snat"]
    if i.network_type and i.network_type != "vpc":
        out.append(Reason("not_vpc", f"network type is {i.network_type}; only VPC instances can use ENIs"))
    if i.os_type and i.os_type != "linux" and opts.guest != "print":
        out.append(Reason("not_linux", f"guest OS is {i.os_type} ({i.os_name}); the policy-routing script needs "
                          "Linux"))
    if i.status != "Running":
        if i.status == "Stopped" and opts.guest == "print":
            pass
        else:
            out.append(Reason("not_running", f"instance is {i.status}; the guest step needs it Running"))
    if i.charge_type == "PrePaid" and a.state == "fixed_ip":  # only a conversion cares about the billing
        if needs_billing_change(i.charge_type, i.internet_charge_type) and not opts.allow_billing_change:
            out.append(Reason("prepaid", "subscription (PrePaid) billed by bandwidth: the public IP converts only "
                              "after a billing change to pay-as-you-go", "--allow-billing-change"))
        if i.expired_time and _expires_within_24h(i.expired_time):
            out.append(Reason("expiring", f"subscription expires at {i.expired_time}, within 24 h: the conversion "
                              "is refused"))
    nics = inv.nics_of(i.instance_id)
    tool_nic = next((n for n in nics if n.tool_managed and n.tags.get("egressctl:instance") == i.instance_id), None)
    quota = inv.eni_quota.get(i.instance_type)
    attached = [n for n in nics if n.instance_id == i.instance_id]
    if tool_nic is None and quota is not None and len(attached) >= quota:
        out.append(Reason("eni_quota", f"ENI quota full: {len(attached)} of {quota} ENIs (primary included) for "
                          f"{i.instance_type}"))
    if tool_nic is None and not hot_pluggable(i.instance_type) and i.status == "Running" and not opts.allow_stop:
        out.append(Reason("needs_stop", f"{i.instance_type} cannot attach an ENI while Running: it must be "
                          "stopped and started again", "--allow-stop"))
    vsw = inv.vswitches.get(i.vswitch_id)
    if tool_nic is None and vsw is not None and vsw.available_ips < 1:
        out.append(Reason("no_free_ip", f"vSwitch {vsw.vswitch_id} ({vsw.cidr}) has no free IP for the new ENI"))
    for port in opts.inbound_ports:
        rules = [r for g in i.security_group_ids for r in inv.sg_rules.get(g, [])]
        if not _port_allowed(rules, port):
            out.append(Reason("sg_port", f"its security groups ({', '.join(i.security_group_ids)}) do not allow "
                              f"tcp/{port} inbound from the internet, so inbound cannot be verified",
                              "--inbound-port"))
    if opts.guest == "cloud-assistant" and i.instance_id in inv.assistant and not inv.assistant[i.instance_id]:
        out.append(Reason("assistant_offline", "Cloud Assistant is not online on the instance", "--guest ssh|print"))
    return out
