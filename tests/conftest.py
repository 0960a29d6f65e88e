"""Test-wide settings: never reach a proxy or the metadata address, whatever the machine has set."""

from __future__ import annotations

import os

for _k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_k, None)
# alibabacloud-credentials would otherwise try 100.100.100.200 (research/sdk-wire.md §10)
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
os.environ["ALIBABA_CLOUD_CLI_PROFILE_DISABLED"] = "true"
