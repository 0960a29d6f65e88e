"""Fixtures for egressctl against vpclab: the lab in-process, a Cloud pointed at it over HTTP, and a
guest executor registered in the lab (the guest step without a data plane)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_credentials import models as cred_models
from alibabacloud_credentials.client import Client as CredentialClient

from egressctl.cloud import Cloud, CloudSettings
from vpclab import DEFAULT_ACCESS_KEY_SECRET, Lab
from vpclab.resources.assistant import CommandResult, CommandRun

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "scenarios" / "seed.yaml"
REGION = "cn-hangzhou"


class FakeGuest:
    """Cloud Assistant's executor for tests without a data plane: records each script and answers
    like the routing script would (its result line), or fails on demand."""

    def __init__(self) -> None:
        self.world: Any = None  # set by the fixture: probes answer from the lab's egress rule
        self.runs: list[CommandRun] = []
        self.fail_for: dict[str, str] = {}  # instance id -> message
        self.lock = threading.Lock()

    def run(self, run: CommandRun) -> CommandResult:
        with self.lock:
            self.runs.append(run)
        if run.instance_id in self.fail_for:
            return CommandResult(exit_code=1, output=f"egressctl: {self.fail_for[run.instance_id]}\n")
        if "EGRESSCTL_PROBE" in run.script:
            from vpclab.egress import source_ip_for

            with self.world.lock:
                ip = source_ip_for(self.world, run.instance_id)
            if ip is None:
                return CommandResult(exit_code=28, output="EGRESSCTL_PROBE begin\ncurl: (28) timed out\n"
                                                          "EGRESSCTL_PROBE end rc=28\n")
            return CommandResult(exit_code=0, output=f"EGRESSCTL_PROBE begin\n当前 IP：{ip}  来自于：lab\n"
                                                     "EGRESSCTL_PROBE end rc=0\n")
        mode = (re.search(r"^EGRESSCTL_MODE=(\w+)$", run.script, re.M) or [None, "probe"])[1]
        body = {"version": 1, "mode": mode, "status": "changed", "eni": None, "mac": None, "ip": None,
                "prefix": None, "gateway": None, "table": None, "priority": None, "dev": None, "rp_filter": None,
                "changes": ["fake guest"], "differences": [], "errors": [], "items": []}
        return CommandResult(exit_code=0, output="fake guest ran it\nEGRESSCTL_RESULT " + json.dumps(body) + "\n")

    def modes(self, instance_id: str) -> list[str]:
        return [m for r in self.runs if r.instance_id == instance_id
                for m in re.findall(r"^EGRESSCTL_MODE=(\w+)$", r.script, re.M)]


def credential(lab: Lab, secret: str = DEFAULT_ACCESS_KEY_SECRET) -> CredentialClient:
    return CredentialClient(cred_models.Config(type="access_key", access_key_id=lab.access_key_id,
                                               access_key_secret=secret))


def cloud_for(lab: Lab, **settings: Any) -> Cloud:
    s = CloudSettings(region=REGION, ecs_endpoint=lab.endpoint, vpc_endpoint=lab.endpoint,
                      sts_endpoint=lab.endpoint, **settings)
    return Cloud(s, credential=credential(lab))


@pytest.fixture
def guest() -> FakeGuest:
    return FakeGuest()


@pytest.fixture
def seed_lab(guest: FakeGuest) -> Iterator[Lab]:
    with Lab(SEED, executor=guest) as lab:
        guest.world = lab.world
        yield lab


@pytest.fixture
def cloud(seed_lab: Lab) -> Cloud:
    return cloud_for(seed_lab)
