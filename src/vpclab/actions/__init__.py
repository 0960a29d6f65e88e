"""The response layer: one handler per OpenAPI action, parsing parameters and shaping the body.

Handlers validate, call the resource operations, and return the body without ``RequestId``.
They never touch HTTP (the server does) and never hold state of their own (the world does).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import errors
from ..protocol import Params, RawList
from ..world import Resource, World

ECS_VERSION = "2014-05-26"
VPC_VERSION = "2016-04-28"
STS_VERSION = "2015-04-01"
LAB_VERSION = "vpclab"  # the lab's own admin actions (faults), signed like every request
SERVICES = {ECS_VERSION: "ecs", VPC_VERSION: "vpc", STS_VERSION: "sts", LAB_VERSION: "lab"}

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


def paged_query(world: World, cls: type[T], region: str, match: Callable[[T], bool] | None, p: Params, *,
                ids: list[str] | None = None, token: tuple[int, int, int] | None = None,
                page_max: int | None = None, clamp: bool = True, max_name: str = "MaxResults",
                action_name: str = "") -> tuple[list[T], dict[str, Any]]:
    """Filter and page a region's resources in creation order without scanning past the page.

    ``token=(lo, hi, default)`` enables NextToken paging (the style ECS prefers, and the only one
    when ``page_max`` is None); ``page_max`` enables PageNumber/PageSize.  ECS actions take both:
    NextToken style when NextToken or MaxResults is given.
    """
    if ids is not None:
        objs = sorted((o for o in (world.get(cls, i, region) for i in dict.fromkeys(ids)) if o is not None),
                      key=lambda o: o.seq)
        seqs = [o.seq for o in objs]
    else:
        objs, seqs = world.ordered(cls, region)
    cutoff = world.hidden_after(action_name) if action_name else None
    if cutoff is not None:
        match = _created_before(cutoff, match)
    if token is not None and (page_max is None or p.str("NextToken") or p.str(max_name)):
        lo, hi, default = token
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
        nt = p.str("NextToken")
        start = bisect.bisect_right(seqs, _decode_token(nt)) if nt else 0
        page: list[T] = []
        more = False
        for i in range(start, len(objs)):  # index, not islice: islice would walk the skipped prefix
            o = objs[i]
            if match is None or match(o):
                if len(page) == size:
                    more = True
                    break
                page.append(o)
        return page, {"NextToken": _encode_token(page[-1].seq) if more and page else ""}
    matched = objs if match is None else [o for o in objs if match(o)]
    sliced, extra = page_numbers(matched, p, page_max or 100)
    if token is not None:
        extra["NextToken"] = ""
    return list(sliced), extra


def _created_before(cutoff: float, match: Callable[[Any], bool] | None) -> Callable[[Any], bool]:
    return lambda o: o.created <= cutoff and (match is None or match(o))


def all_of(*preds: Callable[[Any], bool] | None) -> Callable[[Any], bool] | None:
    """AND of the given predicates (``None`` ones skipped); ``None`` when there is nothing to check."""
    active = [f for f in preds if f is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda o: all(f(o) for f in active)


def equals(**wanted: Any) -> Callable[[Any], bool] | None:
    """Attribute equality for the filters that were given (empty/None values are not filters)."""
    pairs = [(k, v) for k, v in wanted.items() if v not in (None, "")]
    if not pairs:
        return None
    return lambda o: all(getattr(o, k) == v for k, v in pairs)


def cached_render(world: World, obj: Resource, deps: tuple[Any, ...], render: Callable[[], dict[str, Any]]) -> bytes:
    """UTF-8 JSON of ``render()``, reused while the object and its dependencies are unchanged."""
    ck = (obj.KIND, obj.id)
    key = (obj.rev, *deps)
    hit = world.render_cache.get(ck)
    if hit is not None and hit[0] == key:
        return hit[1]
    text = json.dumps(render(), separators=(",", ":"), ensure_ascii=False).encode()
    world.render_cache[ck] = (key, text)
    return text


def raw(items: Iterable[bytes]) -> RawList:
    return RawList(items)


def load_all() -> None:
    from . import admin, ecs, sts, vpc  # noqa: F401
