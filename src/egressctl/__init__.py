"""egressctl: unify the public egress IP of Alibaba Cloud ECS instances that have a fixed public IP."""

__version__ = "0.1.0"
