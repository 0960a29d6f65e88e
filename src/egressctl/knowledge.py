"""Facts about the cloud that no API returns, with their sources."""

from __future__ import annotations

# Instance types that must be Stopped to attach or detach a secondary ENI: DescribeInstanceTypes has no
# hot-plug field (research/aliyun-api.md §3.3, §8; Alibaba "Create an ENI", 2024 and 2026 versions).
HOT_PLUG_LESS = frozenset({
    "ecs.s6-c1m1.small", "ecs.s6-c1m2.large", "ecs.s6-c1m2.small", "ecs.s6-c1m4.large", "ecs.s6-c1m4.small",
    "ecs.e-c1m1.large", "ecs.e-c1m2.large", "ecs.e-c1m4.large", "ecs.e-c4m1.large", "ecs.e-c2m1.large",
    "ecs.t6-c1m1.large", "ecs.t6-c1m2.large", "ecs.t6-c1m4.large", "ecs.t6-c2m1.large", "ecs.t6-c4m1.large",
    "ecs.t5-c1m1.large", "ecs.t5-c1m2.large", "ecs.t5-c1m4.large", "ecs.t5-lc1m1.small", "ecs.t5-lc1m2.large",
    "ecs.t5-lc1m2.small", "ecs.t5-lc1m4.large", "ecs.t5-lc2m1.nano",
    "ecs.xn4.small", "ecs.n4.small", "ecs.n4.large", "ecs.mn4.small", "ecs.mn4.large", "ecs.e4.small",
    "ecs.e4.large",
})


def hot_pluggable(instance_type: str) -> bool:
    return instance_type not in HOT_PLUG_LESS
