"""ClientToken idempotency: the same token with the same parameters gets the first answer again;
with different parameters, ``IdempotentParameterMismatch`` (aliyun-api.md §1).

Tokens are scoped per access key and action and are persisted like any resource, so a client that
retries after a lab restart still gets the resource it created, never a second one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .world import Resource, World, register


@register
@dataclass
class ClientToken(Resource):
    KIND = "client_token"
    PREFIX = "ct"
    fingerprint: str = ""
    response: dict[str, Any] = field(default_factory=dict)


def _key(access_key_id: str, action: str, token: str) -> str:
    return "ct-" + hashlib.sha256(f"{access_key_id}\0{action}\0{token}".encode()).hexdigest()[:32]


def lookup(world: World, access_key_id: str, action: str, token: str, fingerprint: str) -> dict[str, Any] | None:
    if len(token) > 64 or not token.isascii():
        raise errors.ApiError("InvalidClientToken.ValueNotSupported", "The ClientToken is not valid: at most 64 "
                              "ASCII characters.", 400)
    rec = world.tables[ClientToken.KIND].get(_key(access_key_id, action, token))
    if rec is None:
        return None
    assert isinstance(rec, ClientToken)
    if rec.fingerprint != fingerprint:
        raise errors.idempotent_mismatch()
    return dict(rec.response)


def remember(world: World, access_key_id: str, action: str, token: str, fingerprint: str,
             response: dict[str, Any]) -> None:
    body = {k: v for k, v in response.items() if k != "RequestId"}
    world.add(ClientToken(id=_key(access_key_id, action, token), region_id="", fingerprint=fingerprint,
                          response=body))
