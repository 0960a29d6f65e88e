"""Global settings: region, profile and endpoints from options, then the environment.

| option           | environment                                   |
|------------------|-----------------------------------------------|
| --profile P      | EGRESSCTL_PROFILE, ALIBABA_CLOUD_PROFILE      |
| --region R       | EGRESSCTL_REGION, ALIBABA_CLOUD_REGION_ID     |
| --endpoint URL   | EGRESSCTL_ENDPOINT (ECS, VPC and STS)         |
| --ecs-endpoint   | EGRESSCTL_ECS_ENDPOINT                        |
| --vpc-endpoint   | EGRESSCTL_VPC_ENDPOINT                        |
| --sts-endpoint   | EGRESSCTL_STS_ENDPOINT                        |
| --rates FILE     | EGRESSCTL_RATES (the account's API quotas)    |

Credentials come only from the standard chain of ``alibabacloud-credentials`` (environment
variables, ``~/.aliyun/config.json`` profiles shared with the aliyun CLI, credentials.ini, RAM role);
egressctl has no option that takes a secret, so none can end up in shell history or a plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .cloud import CloudSettings, Endpoint
from .cloud.ratelimit import Quota, load_quotas


def _env(*names: str) -> str | None:
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


@dataclass
class Globals:
    profile: str | None = None
    region: str | None = None
    endpoint: str | None = None
    ecs_endpoint: str | None = None
    vpc_endpoint: str | None = None
    sts_endpoint: str | None = None
    rates: str | None = None
    quotas: dict[str, Quota] | None = None  # loaded from ``rates`` by resolved()

    def resolved(self) -> Globals:
        g = Globals(
            profile=self.profile or _env("EGRESSCTL_PROFILE", "ALIBABA_CLOUD_PROFILE"),
            region=self.region or _env("EGRESSCTL_REGION", "ALIBABA_CLOUD_REGION_ID"),
            endpoint=self.endpoint or _env("EGRESSCTL_ENDPOINT"),
            ecs_endpoint=self.ecs_endpoint or _env("EGRESSCTL_ECS_ENDPOINT"),
            vpc_endpoint=self.vpc_endpoint or _env("EGRESSCTL_VPC_ENDPOINT"),
            sts_endpoint=self.sts_endpoint or _env("EGRESSCTL_STS_ENDPOINT"),
            rates=self.rates or _env("EGRESSCTL_RATES"),
        )
        for name in ("endpoint", "ecs_endpoint", "vpc_endpoint", "sts_endpoint"):
            value = getattr(g, name)
            if value:
                Endpoint.parse(value)  # raises ValueError with the option's value
        if g.rates:
            g.quotas = load_quotas(g.rates)  # RatesError (a ValueError) names the file and the entry
        return g

    def settings(self, region: str) -> CloudSettings:
        return CloudSettings(region=region, profile=self.profile,
                             ecs_endpoint=self.ecs_endpoint or self.endpoint,
                             vpc_endpoint=self.vpc_endpoint or self.endpoint,
                             sts_endpoint=self.sts_endpoint or self.endpoint, quotas=self.quotas)
