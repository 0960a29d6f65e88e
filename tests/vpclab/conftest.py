"""Fixtures: a lab started in-process and SDK clients (sync, async-capable, v2-signed) pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_vpc20160428.client import Client as VpcClient

from vpclab import DEFAULT_ACCESS_KEY_SECRET, Lab

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "scenarios" / "seed.yaml"
REGION = "cn-hangzhou"


def sdk_config(lab: Lab, secret: str = DEFAULT_ACCESS_KEY_SECRET, **kw: object) -> open_api_models.Config:
    return open_api_models.Config(access_key_id=lab.access_key_id, access_key_secret=secret,
                                  endpoint=lab.endpoint_hostport, protocol="HTTP", region_id=REGION,
                                  read_timeout=10000, connect_timeout=5000, **kw)


class Clients:
    def __init__(self, lab: Lab):
        self.lab = lab
        self.ecs = EcsClient(sdk_config(lab))
        self.vpc = VpcClient(sdk_config(lab))


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


@pytest.fixture
def seed_lab() -> Iterator[Lab]:
    with Lab(SEED) as lab:
        yield lab


@pytest.fixture
def clients(lab: Lab) -> Clients:
    return Clients(lab)


@pytest.fixture
def seed(seed_lab: Lab) -> Clients:
    return Clients(seed_lab)
