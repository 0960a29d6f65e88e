"""The seed's step 7 on real packets: before, after apply, after a reboot, after rollback."""

from __future__ import annotations

import time
from pathlib import Path

from alibabacloud_ecs20140526 import models as em

from egressctl import plan as plan_mod
from egressctl import workflows
from egressctl.preflight import Options
from tests.egressctl.conftest import REGION, cloud_for
from vpclab import Lab

from .conftest import Host


def _wait(pred, timeout: float = 15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


def test_before_fixed_ip_bypasses_snat_and_neighbours_use_it(host: Host) -> None:
    assert host.egress("web-1") == "203.0.113.10"  # its own fixed public IP
    assert host.egress("web-2") == "203.0.113.12"  # its EIP on the primary NIC
    assert host.egress("app-1") == "203.0.113.100"  # the NAT gateway's SNAT IP
    assert host.egress("app-2") == "203.0.113.100"
    assert "web-1" in (host.inbound("203.0.113.10") or "")
    assert host.inbound("203.0.113.99") is None  # no mapping: nothing answers


def test_metadata_answers_per_instance(host: Host, dp_lab: Lab) -> None:
    def get(name: str, path: str) -> str:
        r = host.sh(name, "python3", "-c", "import urllib.request as u;print(u.urlopen("
                    f"'http://100.100.100.200/latest/meta-data/{path}', timeout=3).read().decode())")
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    for name in ("web-1", "app-1"):
        iid = dp_lab.ids["instances"][name]
        assert get(name, "instance-id") == iid
        mac = get(name, "mac")
        assert get(name, "network/interfaces/macs/") == f"{mac}/"
        assert get(name, f"network/interfaces/macs/{mac}/gateway") == "192.168.3.253"
        assert get(name, f"network/interfaces/macs/{mac}/netmask") == "255.255.255.0"
        assert get(name, f"network/interfaces/macs/{mac}/vswitch-cidr-block") == "192.168.3.0/24"
    assert get("web-1", "eipv4") == "203.0.113.10"
    assert get("app-1", "private-ipv4") == "192.168.3.20"


def _apply_web1(lab: Lab, tmp: Path) -> tuple[plan_mod.Plan, Path]:
    cloud = cloud_for(lab)
    web1 = lab.ids["instances"]["web-1"]
    p, _ = workflows.make_plan(cloud, REGION, instance_ids=[web1], select_all=False, vpc_id=None, tags=None,
                               opts=Options())
    path = tmp / "plan.json"
    plan_mod.save(p, path)
    summary = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.1), "apply")
    assert summary.ok, summary
    lab.dataplane.wait_idle()
    return p, path


def test_after_apply_reboot_and_rollback(host: Host, dp_lab: Lab, tmp_path: Path) -> None:
    p, path = _apply_web1(dp_lab, tmp_path)
    # after: outbound leaves through the SNAT IP, inbound through the EIP on the ENI still answers
    assert host.egress("web-1") == "203.0.113.100"
    assert "web-1" in (host.inbound("203.0.113.10") or "")
    # the reply path is the policy rule: without it, inbound through the EIP fails (negative control)
    rules = host.sh("web-1", "ip", "rule", "show").stdout
    assert "lookup 20001" in rules
    host.sh("web-1", "ip", "rule", "del", "priority", "9001")
    assert host.inbound("203.0.113.10", timeout=1.0) is None
    host.sh("web-1", "ip", "rule", "add", "from", p.instances[0].private_ip, "lookup", "main", "priority", "9002")
    host.sh("web-1", "ip", "rule", "del", "priority", "9002")
    # a reboot forgets the kernel state; the enabled unit puts the routing back
    cloud = cloud_for(dp_lab)
    web1 = p.instances[0].instance_id
    cloud.ecs("RebootInstance", em.RebootInstanceRequest(instance_id=web1))
    status = lambda: dp_lab.world.get(type(dp_lab.world.tables["instance"][web1]), web1).status  # noqa: E731
    assert _wait(lambda: status() == "Running")
    dp_lab.dataplane.wait_idle()
    assert _wait(lambda: "lookup 20001" in host.sh("web-1", "ip", "rule", "show").stdout)
    assert "web-1" in (_wait(lambda: host.inbound("203.0.113.10")) or "")
    assert host.egress("web-1") == "203.0.113.100"
    # rollback: the EIP back on the primary NIC, egress through it again, inbound still works
    summary = workflows.run_engine(cloud, p, path, workflows.ApplySettings(poll_interval=0.1), "rollback")
    assert summary.ok, summary
    dp_lab.dataplane.wait_idle()
    assert host.egress("web-1") == "203.0.113.10"
    assert "web-1" in (host.inbound("203.0.113.10") or "")
    assert "lookup 20001" not in host.sh("web-1", "ip", "rule", "show").stdout
    assert host.sh("web-1", "ip", "link", "show", "eth1").returncode != 0  # the ENI is unplugged


def test_teardown_leaves_nothing_even_when_the_test_fails() -> None:
    from tests.egressctl.conftest import SEED

    from .conftest import lab_namespaces

    prefix = ""
    try:
        with Lab(SEED, dataplane="on") as lab:
            prefix = lab.dataplane.prefix
            assert lab_namespaces(prefix)
            raise RuntimeError("a test failing half-way")
    except RuntimeError:
        pass
    assert prefix and lab_namespaces(prefix) == []
