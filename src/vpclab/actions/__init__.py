"""The response layer: one handler per OpenAPI action, parsing parameters and shaping the body.

Handlers validate, call the resource operations, and return the body without ``RequestId``.
They never touch HTTP (the server does) and never hold state of their own (the world does).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import errors
from ..protocol import Params
from ..world import Resource, World

ECS_VERSION = "2014-05-26"
VPC_VERSION = "2016-04-28"
SERVICES = {ECS_VERSION: "ecs", VPC_VERSION: "vpc"}

T = TypeVar("T", bound=Resource)


@dataclass
class Call:
    world: World
    params: Params
    access_key_id: str
    action: str
    service: str
    request_id: str

    def region(self, required: bool = True) -> str:
        rid = self.params.str("RegionId", required=required)
        if rid is None:
            return ""
        if self.world.catalogue.region(rid) is None:
            raise errors.region_not_found(rid)
        return rid


Handler = Callable[[Call], dict[str, Any]]


@dataclass(frozen=True)
class Action:
    service: str
    name: str
    handler: Handler
    client_token: bool  # accepts ClientToken (idempotent creation)


ACTIONS: dict[tuple[str, str], Action] = {}


def action(service: str, name: str, client_token: bool = False) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        ACTIONS[(service, name)] = Action(service, name, fn, client_token)
        return fn
    return deco


# --- shared rendering -------------------------------------------------------------------------

def ecs_tags(obj: Resource) -> dict[str, list[dict[str, str]]]:
    return {"Tag": [{"TagKey": k, "TagValue": v} for k, v in obj.tags]}


def vpc_tags(obj: Resource) -> dict[str, list[dict[str, str]]]:
    return {"Tag": [{"Key": k, "Value": v} for k, v in obj.tags]}


# --- pagination: each API has its own style ---------------------------------------------------

def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tag, seq = raw.split(":", 1)
        if tag != "v1":
            raise ValueError
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.ApiError("InvalidNextToken.Malformed", "The specified NextToken is not valid.", 400) from None


def by_seq(items: Iterable[T]) -> list[T]:
    return sorted(items, key=lambda o: o.seq)


def page_numbers(items: Sequence[T], p: Params, max_size: int, default: int = 10,
                 size_name: str = "PageSize") -> tuple[Sequence[T], dict[str, Any]]:
    """PageNumber/PageSize (VPC APIs, deprecated ECS style)."""
    size = p.int(size_name, default=default, lo=1, hi=max_size)
    number = p.int("PageNumber", default=1, lo=1)
    assert size is not None and number is not None
    start = (number - 1) * size
    return items[start:start + size], {"TotalCount": len(items), "PageNumber": number, "PageSize": size}


def next_tokens(items: Sequence[Any], p: Params, lo: int, hi: int, default: int, max_name: str = "MaxResults",
                clamp: bool = False, key: Callable[[Any], int] = lambda o: o.seq
                ) -> tuple[Sequence[Any], dict[str, Any]]:
    """NextToken + MaxResults (or VPC's singular ``MaxResult``); ``NextToken`` is "" on the last page."""
    raw = p.str(max_name)
    if raw in (None, ""):
        size = default
    elif clamp:
        try:
            size = min(max(int(raw), lo), hi)
        except ValueError:
            raise errors.invalid(max_name, "It must be an integer.") from None
    else:
        size = p.int(max_name, lo=lo, hi=hi) or default
    token = p.str("NextToken")
    if token:
        after = _decode_token(token)
        items = [o for o in items if key(o) > after]
    page = items[:size]
    more = len(items) > size
    return page, {"NextToken": _encode_token(key(page[-1])) if more and page else ""}


def ecs_paged(items: Sequence[T], p: Params, *, token_lo: int, token_hi: int, token_default: int,
              page_max: int, clamp: bool = True) -> tuple[Sequence[T], dict[str, Any]]:
    """ECS Describe* accept both styles: NextToken/MaxResults when either is given, else pages."""
    if p.str("NextToken") or p.str("MaxResults"):
        page, extra = next_tokens(items, p, token_lo, token_hi, token_default, clamp=clamp)
        extra.update({"TotalCount": len(items), "PageSize": len(page)})
        return page, extra
    page, extra = page_numbers(items, p, page_max)
    extra["NextToken"] = ""
    return page, extra


def load_all() -> None:
    from . import ecs, vpc  # noqa: F401
