"""The minimal RAM policy for what egressctl calls (and nothing it does not)."""

from __future__ import annotations

from typing import Any

READ = ["ecs:DescribeInstances", "ecs:DescribeNetworkInterfaces", "ecs:DescribeInstanceTypes",
        "ecs:DescribeSecurityGroupAttribute", "ecs:DescribeCloudAssistantStatus", "ecs:DescribeInvocations",
        "vpc:DescribeVpcs", "vpc:DescribeVSwitches", "vpc:DescribeRouteEntryList", "vpc:DescribeNatGateways",
        "vpc:DescribeSnatTableEntries", "vpc:DescribeEipAddresses"]
WRITE = ["ecs:ConvertNatPublicIpToEip", "ecs:ModifyInstanceChargeType", "ecs:CreateNetworkInterface",
         "ecs:AttachNetworkInterface", "ecs:DetachNetworkInterface", "ecs:DeleteNetworkInterface",
         "ecs:StopInstance", "ecs:StartInstance", "ecs:RunCommand", "ecs:TagResources",
         "vpc:AssociateEipAddress", "vpc:UnassociateEipAddress"]


def policy() -> dict[str, Any]:
    """Read access to the inventory, and the writes apply/rollback make.  Deliberately absent:
    ``vpc:ReleaseEipAddress`` (egressctl never releases an EIP) and instance deletion.
    ``sts:GetCallerIdentity`` needs no permission."""
    return {
        "Version": "1",
        "Statement": [
            {"Effect": "Allow", "Action": READ, "Resource": "*"},
            {"Effect": "Allow", "Action": WRITE, "Resource": "*"},
        ],
    }
