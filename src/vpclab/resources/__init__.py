"""Resource families of the emulated cloud: one module each (model + operations + transitions)."""

from __future__ import annotations

from ..world import World
from . import assistant, eips, enis, instances, nat, network, security_groups, tags  # noqa: F401


def reindex_all(world: World) -> None:
    for mod in (network, instances, enis, eips, nat, assistant):
        mod.reindex(world)
