"""vpclab: an embedded Alibaba Cloud (ECS + VPC OpenAPI emulator; data plane in network namespaces)."""

from .lab import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Lab

__all__ = ["DEFAULT_ACCESS_KEY_ID", "DEFAULT_ACCESS_KEY_SECRET", "Lab"]
