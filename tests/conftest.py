"""Test-wide settings: never reach a proxy or the metadata address, whatever the machine has set."""

from __future__ import annotations

import os
import uuid

for _k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_k, None)
# alibabacloud-credentials would otherwise try 100.100.100.200 (research/sdk-wire.md §10)
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
os.environ["ALIBABA_CLOUD_CLI_PROFILE_DISABLED"] = "true"

# every lab this session starts (in process or as a subprocess) records this tag in its registry
SESSION = os.environ["VPCLAB_SESSION"] = f"pytest-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def pytest_sessionfinish(session, exitstatus) -> None:  # type: ignore[no-untyped-def]
    """Every lab a test started is gone by the end, even one a test killed on purpose: a stale lab this
    session left behind fails the run (the lab cleans up after itself, and tests after the lab)."""
    from vpclab.dataplane import registries

    left = [r["prefix"] for r in registries() if r.get("session") == SESSION and not r["alive"]]
    if left:
        print(f"\nstale labs left by this test session: {', '.join(left)} (`vpclab clean` removes them)")
        session.exitstatus = 1
