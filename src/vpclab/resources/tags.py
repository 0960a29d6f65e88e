"""Tags on any taggable resource: TagResources, UntagResources, ListTagResources (ECS and VPC flavours)."""

from __future__ import annotations

from .. import errors
from ..world import Resource, World
from .eips import Eip
from .enis import Eni
from .instances import Instance
from .nat import NatGateway
from .network import RouteTable, Vpc, VSwitch
from .security_groups import SecurityGroup

ECS_TYPES: dict[str, type[Resource]] = {"instance": Instance, "eni": Eni, "securitygroup": SecurityGroup}
VPC_TYPES: dict[str, type[Resource]] = {"VPC": Vpc, "VSWITCH": VSwitch, "ROUTETABLE": RouteTable, "EIP": Eip,
                                        "NATGATEWAY": NatGateway}
MAX_TAGS_PER_RESOURCE = 20


def resolve_type(resource_type: str, service: str) -> type[Resource]:
    table = ECS_TYPES if service == "ecs" else VPC_TYPES
    cls = table.get(resource_type) or (table.get(resource_type.upper()) if service == "vpc" else None)
    if cls is None:
        raise errors.ApiError("InvalidResourceType.NotFound", f"The specified ResourceType is not supported. "
                              f"({resource_type})", 404)
    return cls


def validate(tags: list[tuple[str, str]]) -> None:
    seen = set()
    for key, value in tags:
        if not key or len(key) > 128 or key.startswith(("aliyun", "acs:")) or "://" in key:
            raise errors.ApiError("InvalidTagKey.Malformed", f"The specified Tag.n.Key is not valid. ({key!r})", 400)
        if len(value) > 128 or value.startswith(("http://", "https://")):
            raise errors.ApiError("InvalidTagValue.Malformed", f"The specified Tag.n.Value is not valid. ({key!r})",
                                  400)
        if key in seen:
            raise errors.ApiError("Duplicate.TagKey", f"The Tag.N.Key contains duplicate key {key!r}.", 400)
        seen.add(key)


def resolve(world: World, region_id: str, cls: type[Resource], ids: list[str]) -> list[Resource]:
    out = []
    for rid in ids:
        obj = world.get(cls, rid, region_id)
        if obj is None:
            raise errors.ApiError("InvalidResourceId.NotFound", "The specified ResourceIds are not found in our "
                                  f"records. ({rid})", 404)
        out.append(obj)
    return out


def tag(world: World, objs: list[Resource], tags: list[tuple[str, str]]) -> None:
    validate(tags)
    for obj in objs:
        current = dict((k, v) for k, v in obj.tags)
        current.update(tags)
        if len(current) > MAX_TAGS_PER_RESOURCE:
            raise errors.ApiError("QuotaExceed.Tags", f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags.",
                                  403)
    for obj in objs:
        current = dict((k, v) for k, v in obj.tags)
        current.update(tags)
        obj.tags = [[k, v] for k, v in current.items()]
        world.touch(obj)


def untag(world: World, objs: list[Resource], keys: list[str] | None) -> None:
    for obj in objs:
        obj.tags = [] if keys is None else [[k, v] for k, v in obj.tags if k not in keys]
        world.touch(obj)


def matches(obj: Resource, wanted: list[tuple[str, str]]) -> bool:
    have = obj.tag_dict()
    return all(k in have and (v == "" or have[k] == v) for k, v in wanted)
