"""Decoding request parameters the way each action expects, and shaping response bodies.

The SDK flattens lists as ``Name.N`` (1-based) and lists of structs as ``Name.N.Field``; some
actions take a JSON array inside one string (``InstanceIds``), others a comma list
(``AllocationId``); booleans arrive as ``True``/``False`` (research/sdk-wire.md §3).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any

from . import errors

# Parameters of the legacy v2 signature, never part of an action's own input.
COMMON_PARAMS = frozenset({
    "Action", "Version", "Format", "Timestamp", "SignatureNonce", "SignatureMethod", "SignatureVersion",
    "AccessKeyId", "Signature", "SecurityToken", "SignatureType",
})
_INDEXED = re.compile(r"^(?P<name>[A-Za-z0-9]+)\.(?P<n>\d+)(?:\.(?P<field>[A-Za-z0-9.]+))?$")


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


class Params:
    """Typed, validating access to one request's parameters."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self.raw: dict[str, str] = {}
        for k, v in pairs:
            if k not in COMMON_PARAMS:
                self.raw[k] = v

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def str(self, name: str, required: bool = False, default: str | None = None) -> str | None:
        v = self.raw.get(name)
        if v is None or (required and v == ""):
            if required:
                raise errors.missing(name)
            return default
        return v

    def req(self, name: str) -> str:
        v = self.str(name, required=True)
        assert v is not None
        return v

    def choice(self, name: str, allowed: Iterable[str], default: str | None = None,
               required: bool = False, code: str | None = None, status: int = 400) -> str | None:
        v = self.str(name, required=required, default=default)
        allowed = tuple(allowed)
        if v is not None and v not in allowed:
            if code:
                raise errors.ApiError(code, f"The specified {name} \"{v}\" is not supported. Valid values: "
                                      f"{', '.join(allowed)}.", status)
            raise errors.invalid(name, f"Valid values: {', '.join(allowed)}.")
        return v

    def int(self, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None,
            required: bool = False) -> int | None:
        v = self.str(name, required=required)
        if v is None or v == "":
            return default
        try:
            n = int(v)
        except ValueError:
            raise errors.invalid(name, "It must be an integer.") from None
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise errors.invalid(name, f"It must be between {lo} and {hi}.")
        return n

    def bool(self, name: str, default: bool = False) -> bool:
        v = self.raw.get(name)
        if v is None or v == "":
            return default
        low = v.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise errors.invalid(name, "It must be true or false.")

    def repeat(self, name: str, limit: int | None = None) -> list[str]:
        """``Name.1=a&Name.2=b`` → ``["a", "b"]`` (ordered by N)."""
        found: dict[int, str] = {}
        prefix = name + "."
        for k, v in self.raw.items():
            if k.startswith(prefix):
                m = _INDEXED.match(k)
                if m and m.group("name") == name and m.group("field") is None:
                    found[int(m.group("n"))] = v
        if not found and name in self.raw and self.raw[name] != "":
            # some clients send a single value un-indexed
            found[1] = self.raw[name]
        out = [found[i] for i in sorted(found)]
        if limit is not None and len(out) > limit:
            raise errors.invalid(name, f"At most {limit} values are allowed.")
        return out

    def structs(self, name: str, limit: int | None = None) -> list[dict[str, str]]:
        """``Tag.1.Key=k&Tag.1.Value=v`` → ``[{"Key": "k", "Value": "v"}]`` (ordered by N)."""
        found: dict[int, dict[str, str]] = {}
        prefix = name + "."
        for k, v in self.raw.items():
            if k.startswith(prefix):
                m = _INDEXED.match(k)
                if m and m.group("name") == name and m.group("field"):
                    found.setdefault(int(m.group("n")), {})[m.group("field")] = v
        out = [found[i] for i in sorted(found)]
        if limit is not None and len(out) > limit:
            raise errors.invalid(name, f"At most {limit} entries are allowed.")
        return out

    def json_list(self, name: str, limit: int | None = None) -> list[str] | None:
        """A JSON array inside one string (``InstanceIds='["i-1","i-2"]'``); ``None`` when absent."""
        v = self.raw.get(name)
        if v is None or v == "":
            return None
        try:
            data = json.loads(v)
        except json.JSONDecodeError:
            # the docs also allow a plain comma list in some places
            data = [s.strip() for s in v.split(",") if s.strip()]
        if isinstance(data, str):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            raise errors.invalid(name, "It must be a JSON array of strings.")
        if limit is not None and len(data) > limit:
            raise errors.invalid(name, f"At most {limit} values are allowed.")
        return data

    def comma_list(self, name: str, limit: int | None = None) -> list[str] | None:
        v = self.raw.get(name)
        if v is None or v == "":
            return None
        out = [s.strip() for s in v.split(",") if s.strip()]
        if limit is not None and len(out) > limit:
            raise errors.invalid(name, f"At most {limit} values are allowed.")
        return out

    def tags(self, name: str = "Tag", limit: int = 20, code: str | None = None) -> list[tuple[str, str]]:
        """``Tag.N.Key/Value`` pairs; more than ``limit`` answers ``code`` (or InvalidParameter)."""
        out = []
        items = self.structs(name)
        if len(items) > limit:
            if code:
                raise errors.ApiError(code, f"The number of {name}.N exceeds the limit. Valid : {limit}", 400)
            raise errors.invalid(name, f"At most {limit} entries are allowed.")
        for t in items:
            key = t.get("Key")
            if key is None or key == "":
                raise errors.ApiError("InvalidTagKey.Malformed", "The specified Tag.n.Key is not valid.", 400)
            out.append((key, t.get("Value", "")))
        return out

    def fingerprint(self, exclude: Iterable[str] = ("ClientToken",)) -> str:
        skip = set(exclude)
        return json.dumps(sorted((k, v) for k, v in self.raw.items() if k not in skip))


def wrap(name: str, items: list[Any]) -> dict[str, list[Any]]:
    """The XML-derived double nesting every list uses: ``{"Instance": [...]}``."""
    return {name: items}


class RawList(list):  # type: ignore[type-arg]
    """A list whose items are already UTF-8 JSON (cached renders), spliced in by ``dumps``."""


def dumps(body: dict[str, Any]) -> bytes:
    """Compact JSON; a ``RawList`` in a list wrapper (``{"Instances": {"Instance": RawList}}``) is spliced in."""
    for key, wrapper in body.items():
        if isinstance(wrapper, dict) and len(wrapper) == 1:
            (inner_key, inner), = wrapper.items()
            if isinstance(inner, RawList):
                marker = "\x00raw\x00"
                text = json.dumps({**body, key: {inner_key: marker}}, separators=(",", ":"), ensure_ascii=False)
                head, tail = text.split(json.dumps(marker), 1)
                return b"".join((head.encode(), b"[", b",".join(inner), b"]", tail.encode()))
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
