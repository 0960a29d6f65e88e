"""The SDK's own view of a response: wire keys and value types, read from the installed models.

The SDK's ``from_map`` silently drops unknown keys and never checks types, so a misspelled or
mistyped field in the emulator would go unnoticed by any client test.  ``check(body_cls, data)``
walks an emulator response against the model and returns every key the model does not know and
every value whose JSON type differs from the model's annotation.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
import typing
from typing import Any

_BLOCK = re.compile(r"if m\.get\('(?P<key>[^']+)'\) is not None:\n(?P<body>(?:\s{12,}.*\n?)+)")


@functools.cache
def schema(cls: type) -> dict[str, tuple[str, type | None]]:
    """wire key -> (kind, nested model class); kind in str/int/bool/float/list/dict/any/model/list_model."""
    src = inspect.getsource(cls.from_map)
    module = importlib.import_module(cls.__module__)
    hints = typing.get_type_hints(cls.__init__, globalns=vars(module) | {"main_models": _main_models(cls)})
    out: dict[str, tuple[str, type | None]] = {}
    for m in _BLOCK.finditer(src):
        key, body = m.group("key"), m.group("body")
        attr = re.search(r"self\.(\w+)", body)
        nested = re.search(r"main_models\.(\w+)\(\)", body)
        if attr is None:
            continue
        hint = hints.get(attr.group(1), Any)
        if nested:
            ncls = getattr(_main_models(cls), nested.group(1))
            out[key] = ("list_model" if "for k" in body else "model", ncls)
        else:
            out[key] = (_kind(hint), None)
    return out


def _main_models(cls: type) -> Any:
    return importlib.import_module(cls.__module__.rsplit(".models", 1)[0] + ".models")


def _kind(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):  # noqa: UP006
        return "list"
    if origin in (dict, typing.Dict):  # noqa: UP006
        return "dict"
    return {str: "str", int: "int", bool: "bool", float: "float"}.get(hint, "any")


def _type_ok(kind: str, value: Any) -> bool:
    if value is None:
        return True
    return {
        "str": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "list": isinstance(value, list),
        "dict": isinstance(value, dict),
        "any": True,
        "model": isinstance(value, dict),
        "list_model": isinstance(value, list),
    }[kind]


def check(cls: type, data: Any, path: str = "") -> list[str]:
    """Problems found: unknown keys and type mismatches, each with its JSON path."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return [f"{path or '<body>'}: expected an object, got {type(data).__name__}"]
    sch = schema(cls)
    for key, value in data.items():
        here = f"{path}.{key}" if path else key
        if key not in sch:
            problems.append(f"{here}: not a field of {cls.__name__}")
            continue
        kind, ncls = sch[key]
        if not _type_ok(kind, value):
            problems.append(f"{here}: {type(value).__name__} where the SDK model has {kind}")
            continue
        if kind == "model" and ncls is not None:
            problems += check(ncls, value, here)
        elif kind == "list_model" and ncls is not None:
            for i, item in enumerate(value):
                problems += check(ncls, item, f"{here}[{i}]")
        elif kind == "list":
            bad = [v for v in value if isinstance(v, (dict, list))]
            if bad:
                problems.append(f"{here}: list of scalars expected")
    return problems


def keys_tree(cls: type, depth: int = 0, max_depth: int = 6) -> str:
    """Human-readable tree of the model's wire keys (a development aid)."""
    lines = []
    for key, (kind, ncls) in sorted(schema(cls).items()):
        lines.append("  " * depth + f"{key} ({kind})")
        if ncls is not None and depth < max_depth:
            lines.append(keys_tree(ncls, depth + 1, max_depth))
    return "\n".join(x for x in lines if x)
