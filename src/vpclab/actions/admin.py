"""The lab's own admin actions (version ``vpclab``): set and read the fault plan at run time.

Signed and authenticated like every other request, so only holders of a lab key can change it."""

from __future__ import annotations

import json
from typing import Any

from .. import errors
from ..faults import FaultError, Faults, parse_rules
from . import Call, action

S = "lab"


def _faults(c: Call) -> Faults:
    if c.world.faults is None:
        raise errors.ApiError("FaultsDisabled", "This lab was started without fault injection support.", 400)
    return c.world.faults


@action(S, "SetFaults")
def set_faults(c: Call) -> dict[str, Any]:
    raw = c.params.req("Faults")
    try:
        data = json.loads(raw)
        rules, seed = parse_rules(data, "Faults")
    except (json.JSONDecodeError, FaultError) as e:
        raise errors.invalid("Faults", str(e)) from None
    _faults(c).set(rules, seed)
    return {"Rules": len(rules)}


@action(S, "GetFaults")
def get_faults(c: Call) -> dict[str, Any]:
    f = _faults(c)
    return {"Rules": [{"kind": r.kind, "actions": r.actions, "rate": r.rate, **r.params} for r in f.rules],
            "Fired": f.counts()}
