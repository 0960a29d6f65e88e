"""STS 2015-04-01: GetCallerIdentity, so tools can learn which account their keys belong to."""

from __future__ import annotations

import hashlib
from typing import Any

from . import Call, action

S = "sts"


@action(S, "GetCallerIdentity")
def get_caller_identity(c: Call) -> dict[str, Any]:
    account = c.world.account_id
    # each lab key stands for a RAM user of the lab's one account; the id is derived, stable per key
    user_id = str(int(hashlib.sha256(c.access_key_id.encode()).hexdigest(), 16) % 10**16).rjust(16, "2")
    return {"AccountId": account, "UserId": user_id, "PrincipalId": user_id, "IdentityType": "RAMUser",
            "Arn": f"acs:ram::{account}:user/{c.access_key_id.lower()}", "RoleId": ""}
