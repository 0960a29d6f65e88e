"""The seam between egressctl and the cloud (real Alibaba Cloud or vpclab): SDK clients, rate
limits, retries, classified errors and batched waiters."""

from .client import Cloud, CloudSettings, Endpoint
from .errors import AuthError, Busy, CloudError, NotFound, Refused, Throttled, Transient

__all__ = ["AuthError", "Busy", "Cloud", "CloudError", "CloudSettings", "Endpoint", "NotFound", "Refused",
           "Throttled", "Transient"]
