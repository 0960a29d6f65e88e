"""The lab's catalogue of regions, zones, public images and instance types (read-only data).

The data lives in JSON beside this module (regions.json, images.json, instance_types.json) so it
can be reviewed against the sources named in docs/emulator.md.  ``hot_plug: false`` marks the
instance types that need the instance Stopped to attach a secondary ENI (aliyun-api.md §8).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Zone:
    zone_id: str
    local_name: str


@dataclass(frozen=True)
class Region:
    region_id: str
    local_name: str
    local_name_en: str
    ecs_endpoint: str
    vpc_endpoint: str
    code: str
    zones: tuple[Zone, ...]


@dataclass(frozen=True)
class Image:
    image_id: str
    image_name: str
    os_type: str  # linux | windows
    os_name: str
    os_name_en: str
    platform: str
    architecture: str
    size: int


@dataclass(frozen=True)
class InstanceType:
    instance_type_id: str
    family: str
    cpu: int
    memory_gib: float
    family_level: str
    eni_quantity: int
    eni_private_ip_quantity: int
    eni_ipv6_quantity: int
    hot_plug: bool
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Catalogue:
    def __init__(self, regions: list[Region], images: list[Image], types: list[InstanceType]):
        self.regions = {r.region_id: r for r in regions}
        self.images = {i.image_id: i for i in images}
        self.instance_types = {t.instance_type_id: t for t in types}

    @classmethod
    def default(cls) -> Catalogue:
        return cls.from_dir(_DIR)

    @classmethod
    def from_dir(cls, d: Path) -> Catalogue:
        regions = [
            Region(r["RegionId"], r["LocalName"], r["LocalNameEn"], r["RegionEndpoint"], r["VpcEndpoint"], r["code"],
                   tuple(Zone(z["ZoneId"], z["LocalName"]) for z in r["zones"]))
            for r in json.loads((d / "regions.json").read_text())["regions"]
        ]
        images = [
            Image(i["ImageId"], i["ImageName"], i["OSType"], i["OSName"], i["OSNameEn"], i["Platform"],
                  i["Architecture"], int(i["Size"]))
            for i in json.loads((d / "images.json").read_text())["images"]
        ]
        types = [
            InstanceType(t["InstanceTypeId"], t["InstanceTypeFamily"], int(t["CpuCoreCount"]), float(t["MemorySize"]),
                         t["InstanceFamilyLevel"], int(t["EniQuantity"]), int(t["EniPrivateIpAddressQuantity"]),
                         int(t.get("EniIpv6AddressQuantity", 0)), bool(t["hot_plug"]))
            for t in json.loads((d / "instance_types.json").read_text())["instance_types"]
        ]
        return cls(regions, images, types)

    def region(self, region_id: str) -> Region | None:
        return self.regions.get(region_id)

    def region_code(self, region_id: str) -> str:
        r = self.regions.get(region_id)
        return r.code if r else "xx"

    def zone(self, region_id: str, zone_id: str) -> Zone | None:
        r = self.regions.get(region_id)
        if r is None:
            return None
        return next((z for z in r.zones if z.zone_id == zone_id), None)
