"""Security groups and their ingress/egress permissions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import errors
from ..world import Resource, World, register
from .network import get_vpc


@register
@dataclass
class SecurityGroup(Resource):
    KIND = "security_group"
    PREFIX = "sg"
    vpc_id: str = ""
    name: str = ""
    description: str = ""
    group_type: str = "normal"
    permissions: list[dict[str, Any]] = field(default_factory=list)


def get_sg(world: World, region_id: str, sg_id: str | None) -> SecurityGroup:
    sg = world.get(SecurityGroup, sg_id, region_id)
    if sg is None:
        raise errors.ApiError("InvalidSecurityGroupId.NotFound", f"The specified SecurityGroupId does not exist. "
                              f"({sg_id})", 404)
    return sg


def create_security_group(world: World, region_id: str, vpc_id: str | None, name: str = "", description: str = "",
                          group_type: str = "normal") -> SecurityGroup:
    if not vpc_id:
        raise errors.ApiError("InvalidVpcId.Malformed", "The lab only offers VPC security groups: VpcId is required.",
                              400)
    vpc = get_vpc(world, region_id, vpc_id)
    if group_type not in ("normal", "enterprise"):
        raise errors.invalid("SecurityGroupType", "Valid values: normal, enterprise.")
    sg = SecurityGroup(id=world.new_id("sg", region_id), region_id=region_id, vpc_id=vpc.id, name=name,
                       description=description, group_type=group_type)
    return world.add(sg)


_PROTOCOLS = ("tcp", "udp", "icmp", "gre", "all", "icmpv6")


def parse_port_range(port_range: str, protocol: str) -> tuple[int, int]:
    try:
        a, b = port_range.split("/")
        lo, hi = int(a), int(b)
    except ValueError:
        raise errors.ApiError("InvalidPortRange.Malformed", f"The specified PortRange is not valid. ({port_range})",
                              400) from None
    if protocol in ("tcp", "udp"):
        if not (1 <= lo <= hi <= 65535):
            raise errors.ApiError("InvalidPortRange.Malformed", f"The specified PortRange is not valid. "
                                  f"({port_range})", 400)
    elif (lo, hi) != (-1, -1):
        raise errors.ApiError("InvalidPortRange.Malformed", f"PortRange must be -1/-1 for protocol {protocol}.", 400)
    return lo, hi


def authorize(world: World, sg: SecurityGroup, permissions: list[dict[str, Any]], direction: str = "ingress") -> None:
    for perm in permissions:
        proto = str(perm.get("IpProtocol", "")).lower()
        if proto not in _PROTOCOLS:
            raise errors.ApiError("InvalidIpProtocol.Malformed", f"The specified IpProtocol is not valid. "
                                  f"({perm.get('IpProtocol')})", 400)
        parse_port_range(str(perm.get("PortRange", "")), proto)
        policy = perm.get("Policy") or "accept"
        if policy not in ("accept", "drop"):
            raise errors.invalid("Policy", "Valid values: accept, drop.")
        rule = {
            "Direction": direction, "IpProtocol": proto.upper() if proto != "all" else "ALL",
            "PortRange": perm["PortRange"], "SourceCidrIp": perm.get("SourceCidrIp", ""),
            "DestCidrIp": perm.get("DestCidrIp", ""), "Policy": policy.capitalize() if policy else "Accept",
            "Priority": str(perm.get("Priority") or "1"), "Description": perm.get("Description", ""),
            "SourceGroupId": perm.get("SourceGroupId", ""), "NicType": perm.get("NicType", "intranet"),
            "CreateTime": world.clock.now(),
        }
        key = (rule["Direction"], rule["IpProtocol"], rule["PortRange"], rule["SourceCidrIp"], rule["DestCidrIp"],
               rule["Policy"], rule["SourceGroupId"])
        if any((r["Direction"], r["IpProtocol"], r["PortRange"], r["SourceCidrIp"], r["DestCidrIp"], r["Policy"],
                r["SourceGroupId"]) == key for r in sg.permissions):
            continue  # the cloud accepts a duplicate rule without adding it twice
        sg.permissions.append(rule)
    world.touch(sg)


def allows_ingress(sg: SecurityGroup, port: int, protocol: str = "tcp", source: str = "0.0.0.0/0") -> bool:
    """Whether an accept rule lets ``protocol/port`` in from ``source`` (drop rules of a lower priority win)."""
    import ipaddress

    src = ipaddress.ip_network(source)
    best: tuple[int, int] | None = None  # (priority, accept?)
    for r in sg.permissions:
        if r["Direction"] != "ingress":
            continue
        proto = r["IpProtocol"].lower()
        if proto not in (protocol, "all"):
            continue
        lo, hi = (int(x) for x in r["PortRange"].split("/"))
        if proto != "all" and (lo, hi) != (-1, -1) and not (lo <= port <= hi):
            continue
        cidr = r["SourceCidrIp"] or ("0.0.0.0/0" if not r["SourceGroupId"] else "")
        if not cidr or not src.subnet_of(ipaddress.ip_network(cidr)):  # type: ignore[arg-type]
            continue
        prio = int(r["Priority"])
        accept = 1 if r["Policy"].lower() == "accept" else 0
        cand = (prio, accept)
        if best is None or cand[0] < best[0] or (cand[0] == best[0] and accept == 0):
            best = cand
    return bool(best and best[1])
