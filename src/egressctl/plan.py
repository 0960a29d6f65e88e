"""The plan file: versioned, self-checking JSON that says exactly what apply will do.

A plan is bound to an account and a region, carries a checksum over its content (a truncated or
hand-edited plan is refused), and lists per instance the steps in order and the expected end state.
Making a plan changes nothing in the cloud.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .egress import Analysis
from .inventory import Inventory
from .knowledge import hot_pluggable
from .preflight import Options, needs_billing_change

FORMAT = "egressctl-plan"
VERSION = 1
STEP_ORDER = ("preflight", "billing", "convert", "create_eni", "stop", "attach", "start", "guest", "unassociate",
              "associate", "verify")


class PlanError(ValueError):
    """A plan file that cannot be used; the message says which file and why."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EniSpec(_M):
    vswitch_id: str
    cidr: str  # the vSwitch's: the guest's prefix length and gateway (broadcast - 2) come from it
    security_group_ids: list[str]
    name: str
    description: str


class GuestSpec(_M):
    runner: Literal["cloud-assistant", "ssh", "print"]
    table: int = Field(20001, ge=1, le=2**31 - 1)
    priority: int = Field(9001, ge=1, le=32765)


class Expected(_M):
    egress_kind: Literal["snat"] = "snat"
    egress_ip: str
    nat_gateway_id: str
    inbound_ip: str


class InstancePlan(_M):
    instance_id: str
    name: str
    zone_id: str
    vpc_id: str
    vswitch_id: str
    private_ip: str
    instance_type: str
    public_ip: str
    state: Literal["fixed_ip", "eip_primary"]
    eip_allocation_id: str | None = None
    billing_change: bool = False
    stop_for_attach: bool = False
    eni: EniSpec
    guest: GuestSpec
    steps: list[str]
    expected: Expected

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, steps: list[str]) -> list[str]:
        unknown = [s for s in steps if s not in STEP_ORDER]
        if unknown:
            raise ValueError(f"unknown step {unknown[0]!r} (steps are {', '.join(STEP_ORDER)})")
        if len(set(steps)) != len(steps):
            raise ValueError("a step appears twice")
        return steps


class PlanOptions(_M):
    allow_billing_change: bool
    allow_stop: bool
    inbound_ports: list[int]
    guest: Literal["cloud-assistant", "ssh", "print"]
    order: Literal["guest-first", "seed"] = "guest-first"


class Excluded(_M):
    instance_id: str
    name: str
    action: Literal["ok", "blocked", "skip"]
    reasons: list[str]


class Plan(_M):
    format: Literal["egressctl-plan"] = FORMAT
    version: int = VERSION
    plan_id: str
    created: str
    account_id: str
    region: str
    options: PlanOptions
    instances: list[InstancePlan]
    excluded: list[Excluded] = Field(default_factory=list)
    checksum: str = ""

    def body_digest(self) -> str:
        data = self.model_dump(mode="json", exclude={"checksum"})
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def sealed(self) -> Plan:
        return self.model_copy(update={"checksum": self.body_digest()})

    def instance(self, instance_id: str) -> InstancePlan:
        for p in self.instances:
            if p.instance_id == instance_id:
                return p
        raise KeyError(instance_id)


def steps_for(billing: bool, stop: bool, order: str = "guest-first") -> list[str]:
    """The step list.  ``order="seed"`` reproduces the seed's order (guest routing after the EIP move),
    which keeps inbound down while the guest is configured: only for comparisons (benchmarks)."""
    out = []
    for s in STEP_ORDER:
        if s == "billing" and not billing:
            continue
        if s in ("stop", "start") and not stop:
            continue
        out.append(s)
    if order == "seed":
        out.remove("guest")
        out.insert(out.index("associate") + 1, "guest")
    return out


def build(inv: Inventory, analyses: list[Analysis], candidates: list[str], opts: Options, account_id: str,
          blocked: dict[str, list[str]]) -> Plan:
    """A plan for ``candidates`` (already preflight-clean); everything else selected goes to ``excluded``."""
    by_id = {a.instance.instance_id: a for a in analyses}
    items = []
    for iid in candidates:
        a = by_id[iid]
        i = a.instance
        assert a.snat is not None and a.inbound_ip
        billing = needs_billing_change(i.charge_type, i.internet_charge_type) and a.state == "fixed_ip"
        stop = not hot_pluggable(i.instance_type) and i.status == "Running"
        items.append(InstancePlan(
            instance_id=iid, name=i.name, zone_id=i.zone_id, vpc_id=i.vpc_id, vswitch_id=i.vswitch_id,
            private_ip=i.private_ip, instance_type=i.instance_type, public_ip=a.inbound_ip,
            state=a.state,  # type: ignore[arg-type]
            eip_allocation_id=a.eip_allocation_id, billing_change=billing, stop_for_attach=stop,
            eni=EniSpec(vswitch_id=i.vswitch_id, cidr=inv.vswitches[i.vswitch_id].cidr,
                        security_group_ids=list(i.security_group_ids),
                        name=f"egressctl-{iid}", description=f"egressctl: inbound EIP of {iid}"),
            guest=GuestSpec(runner=opts.guest),  # type: ignore[arg-type]
            steps=steps_for(billing, stop, opts.order),
            expected=Expected(egress_ip=a.snat[0].snat_ips[0], nat_gateway_id=a.snat[1].nat_gateway_id,
                              inbound_ip=a.inbound_ip)))
    excluded = [Excluded(instance_id=a.instance.instance_id, name=a.instance.name,
                         action="blocked" if a.instance.instance_id in blocked else a.action,  # type: ignore[arg-type]
                         reasons=blocked.get(a.instance.instance_id) or [r.text() for r in a.reasons])
                for a in analyses if a.instance.instance_id not in candidates]
    plan = Plan(plan_id="p-" + uuid.uuid4().hex[:16], created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                account_id=account_id, region=inv.region,
                options=PlanOptions(allow_billing_change=opts.allow_billing_change, allow_stop=opts.allow_stop,
                                    inbound_ports=list(opts.inbound_ports), guest=opts.guest,  # type: ignore[arg-type]
                                    order=opts.order),  # type: ignore[arg-type]
                instances=items, excluded=excluded)
    return plan.sealed()


def save(plan: Plan, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(plan.model_dump(mode="json"), indent=2) + "\n")
    tmp.replace(path)


def load(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan: {e.strerror}") from None
    except UnicodeDecodeError:
        raise PlanError(f"{path}: not a plan (not UTF-8 text)") from None
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not a plan (invalid JSON at line {e.lineno}: {e.msg}; truncated?)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise PlanError(f"{path}: not an egressctl plan (format is {found!r})")
    if data.get("version") != VERSION:
        raise PlanError(f"{path}: plan version {data.get('version')!r}; this egressctl reads version {VERSION}")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise PlanError(f"{path}: invalid plan: {loc}: {first['msg']}") from None
    if plan.checksum != plan.body_digest():
        raise PlanError(f"{path}: the plan's checksum does not match its content (edited by hand?); make a new plan "
                        "with `egressctl plan`")
    return plan
