"""The guest routing script against a real kernel: network namespaces + nftables (root only).

The lab (netlab.py) is a vSwitch with SDN behaviour (static neighbours, per-port source check), a
guest with two NICs in one subnet and strict rp_filter, an "EIP" 1:1 NAT to the ENI and SNAT for the
primary. Real TCP connections show what the guest does: inbound via the EIP, and which source a new
outbound connection leaves with.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from egressctl.guest.script import GuestResult, GuestRouting, parse_result, render, render_batch

from .netlab import (
    EIP,
    ENI_IP,
    ENI_MAC,
    GATEWAY,
    PRIMARY_IP,
    SNAT_IP,
    Guest,
    GuestRoot,
    ScriptRun,
    VSwitchLab,
    netns_unavailable_reason,
)

REASON = netns_unavailable_reason()
pytestmark = [pytest.mark.root, pytest.mark.skipif(REASON is not None, reason=f"root netns tests: {REASON}"),
              pytest.mark.timeout(60)]

ENI = GuestRouting(mac=ENI_MAC, ip=ENI_IP, prefix=24, gateway=GATEWAY, eni_id="eni-bp1labtest0001", wait_s=5)
NM_HOOK = "/etc/NetworkManager/dispatcher.d/90-egressctl-routing"
ND_HOOK = "/etc/networkd-dispatcher/routable.d/50-egressctl-routing"


@pytest.fixture
def lab() -> Iterator[VSwitchLab]:
    lab = VSwitchLab()
    try:
        yield lab.build()
    finally:
        lab.close()


@pytest.fixture
def guest(lab: VSwitchLab) -> Guest:
    return Guest(lab, GuestRoot(lab.base / "root"))


def run(guest: Guest, mode: str, routing: GuestRouting = ENI, *, expect_rc: int | None = 0, **kw) -> GuestResult:
    done = guest.run_script(render(routing, mode, **kw))  # type: ignore[arg-type]
    return _result(done, expect_rc)


def _result(done: ScriptRun, expect_rc: int | None) -> GuestResult:
    assert done.stdout.splitlines()[-1].startswith("EGRESSCTL_RESULT "), done.stdout + done.stderr
    if expect_rc is not None:
        assert done.returncode == expect_rc, done.stdout + done.stderr
    return parse_result(done.stdout)


def state_without_file_times(lab: VSwitchLab, guest: Guest) -> tuple:
    """Kernel state plus the guest's files (path, type, mode, link target, size; deleting a file
    changes its directory's mtime, so times are left out)."""
    return lab.kernel_snapshot(), [" ".join(line.split(" ")[:5]) for line in guest.files()]


# ------------------------------------------------------------------------------ the core promise


def test_negative_control_then_apply_fixes_inbound_and_keeps_egress(lab: VSwitchLab, guest: Guest) -> None:
    before = lab.kernel_snapshot()
    assert before["sysctls"]["all.rp_filter"] == "1" and before["sysctls"]["eth1.rp_filter"] == "1"
    # Negative control: without the rule the reply to the EIP leaves eth0 (or is dropped by strict
    # rp_filter before that), so the connection via the EIP hangs.
    assert lab.inbound() is None
    assert lab.egress_ip() == SNAT_IP

    result = run(guest, "apply")
    assert result.status == "changed" and result.mode == "apply"
    assert (result.eni, result.ip, result.dev, result.table, result.priority) == (
        "eni-bp1labtest0001", ENI_IP, "eth1", 20001, 9001)
    assert result.rp_filter == 1 and not result.errors and not result.differences

    assert lab.inbound() == ENI_IP                  # inbound via the EIP reaches the ENI and gets answers
    assert lab.egress_ip() == SNAT_IP               # new outbound connections still leave the primary NIC
    assert lab.egress_ip(bind=ENI_IP) == EIP        # traffic from the ENI IP leaves the ENI
    after = lab.kernel_snapshot()
    assert after["sysctls"] == before["sysctls"]    # rp_filter (and ARP settings) untouched
    rules = lab.ip("guest", "-4", "rule", "show").stdout
    assert "9001:\tfrom 192.168.3.11 lookup 20001" in rules
    assert PRIMARY_IP not in rules                  # no rule for the primary IP
    assert "dev eth0" in lab.ip("guest", "-4", "route", "get", "192.0.2.1").stdout
    assert before["routes"] == [r for r in after["routes"] if '"table": "20001"' not in r]  # main untouched
    assert run(guest, "check").status == "ok"


def test_apply_twice_changes_nothing_the_second_time(lab: VSwitchLab, guest: Guest) -> None:
    run(guest, "apply")
    kernel, files = lab.kernel_snapshot(), guest.files()
    second = run(guest, "apply")
    assert second.status == "ok" and second.changes == () and second.errors == ()
    assert lab.kernel_snapshot() == kernel
    assert guest.files() == files                   # not even an mtime changed
    # the installed copy checks the same thing from the config alone (what "verify" uses)
    installed = _result(guest.run(["/bin/sh", "/usr/local/lib/egressctl/egress-routing.sh", "check"]), 0)
    assert installed.status == "ok" and len(installed.items) == 1


DRIFTS = {
    "deleted-rule": 'rule "9001: from 192.168.3.11 lookup 20001" is missing',
    "moved-default": "main table: default route on eth1 (metric 200) is not worse than the primary's (metric 300)",
    "missing-address": "address: 192.168.3.11/24 is missing on eth1",
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_check_catches_drift_and_apply_repairs_it(lab: VSwitchLab, guest: Guest, drift: str) -> None:
    run(guest, "apply")
    assert run(guest, "check").status == "ok"
    if drift == "deleted-rule":
        lab.ip("guest", "rule", "del", "priority", "9001")
    elif drift == "moved-default":
        # the primary's default route now has a worse metric than the image's eth1 route (200)
        lab.ip("guest", "route", "del", "default", "via", GATEWAY, "dev", "eth0", "metric", "100")
        lab.ip("guest", "route", "add", "default", "via", GATEWAY, "dev", "eth0", "metric", "300")
        assert lab.egress_ip() == EIP               # egress really moved to the ENI
    else:
        lab.ip("guest", "addr", "del", f"{ENI_IP}/24", "dev", "eth1")
    expected = DRIFTS[drift]
    drifted = run(guest, "check", expect_rc=1)
    assert drifted.status == "drift"
    assert expected in drifted.differences, drifted.differences
    assert drifted.items[0].status == "drift"

    repaired = run(guest, "apply")
    assert repaired.status == "changed" and not repaired.errors
    assert run(guest, "check").status == "ok"
    assert lab.inbound() == ENI_IP
    assert lab.egress_ip() == SNAT_IP


def test_remove_leaves_the_guest_as_it_was(lab: VSwitchLab, guest: Guest) -> None:
    before = state_without_file_times(lab, guest)
    run(guest, "apply")
    assert state_without_file_times(lab, guest) != before
    removed = run(guest, "remove")
    assert removed.status == "changed" and not removed.errors
    assert state_without_file_times(lab, guest) == before
    again = run(guest, "remove")
    assert again.status == "ok" and again.changes == ()
    assert lab.inbound() is None                    # back to the negative-control state


def test_reboot_restores_everything_from_the_enabled_unit(lab: VSwitchLab, guest: Guest) -> None:
    run(guest, "apply")
    root = guest.root
    link = root.host_path("/etc/systemd/system/multi-user.target.wants/egressctl-routing.service")
    assert link.is_symlink() and str(Path(link.readlink())) == "/etc/systemd/system/egressctl-routing.service"
    unit = root.host_path("/etc/systemd/system/egressctl-routing.service").read_text().splitlines()
    assert "After=network-online.target" in unit and "Wants=network-online.target" in unit
    assert "Type=oneshot" in unit and "WantedBy=multi-user.target" in unit
    exec_start = next(line.split("=", 1)[1] for line in unit if line.startswith("ExecStart="))

    lab.reboot_guest()                              # new namespace, new NICs: only the image's config
    assert lab.ip("guest", "-4", "rule", "show").stdout.count("lookup 20001") == 0
    assert lab.inbound() is None

    booted = _result(guest.run(shlex.split(exec_start)), 0)   # what systemd runs at boot
    assert booted.mode == "reapply" and booted.status == "changed"
    assert lab.inbound() == ENI_IP
    assert lab.egress_ip() == SNAT_IP
    assert run(guest, "check").status == "ok"


# ------------------------------------------------------------------------------ network events


def test_dhcp_default_route_on_the_secondary_is_corrected_by_the_hooks(lab: VSwitchLab, guest: Guest) -> None:
    run(guest, "apply")
    # A DHCP client on eth1 installs a better default route: egress moves to the ENI (= the EIP).
    lab.ip("guest", "route", "add", "default", "via", GATEWAY, "dev", "eth1", "metric", "50", "proto", "dhcp")
    assert lab.egress_ip() == EIP
    drifted = run(guest, "check", expect_rc=1)
    assert any("default route on eth1 (metric 50)" in d for d in drifted.differences)

    ignored = guest.run([NM_HOOK, "eth1", "down"])   # the hook ignores other events
    assert (ignored.returncode, ignored.stdout) == (0, "")
    fixed = _result(guest.run([NM_HOOK, "eth1", "dhcp4-change"]), 0)
    assert fixed.mode == "reapply" and fixed.status == "changed"
    assert lab.egress_ip() == SNAT_IP
    assert run(guest, "check").status == "ok"

    # Equal metric (a client that appends), fixed by the networkd-dispatcher hook: the route is
    # demoted behind the primary, and remove takes the demoted route away again.
    lab.ip("guest", "route", "del", "default", "via", GATEWAY, "dev", "eth1", "metric", "200")
    lab.ip("guest", "route", "append", "default", "via", GATEWAY, "dev", "eth1", "metric", "100")
    assert any("metric 100" in d for d in run(guest, "check", expect_rc=1).differences)
    _result(guest.run([ND_HOOK]), 0)
    main = lab.ip("guest", "-4", "route", "show", "table", "main", "exact", "0.0.0.0/0").stdout
    assert "dev eth1 proto 236 metric 101" in main and "dev eth1 metric 100" not in main
    assert lab.egress_ip() == SNAT_IP and lab.inbound() == ENI_IP
    run(guest, "remove")
    assert "dev eth1" not in lab.ip("guest", "-4", "route", "show", "table", "main", "exact", "0.0.0.0/0").stdout


def test_nic_down_up_is_repaired_by_the_hook(lab: VSwitchLab, guest: Guest) -> None:
    run(guest, "apply")
    lab.ip("guest", "link", "set", "eth1", "down")
    lab.ip("guest", "link", "set", "eth1", "up")      # the kernel dropped every route through eth1
    assert lab.ip("guest", "-4", "route", "show", "table", "20001").stdout.strip() == ""
    assert lab.inbound(timeout=1.0) is None
    repaired = _result(guest.run([NM_HOOK, "eth1", "up"]), 0)
    assert any("table 20001" in c for c in repaired.changes)
    assert lab.inbound() == ENI_IP
    assert run(guest, "check").status == "ok"


def test_hot_plugged_nic_is_awaited_found_by_mac_and_configured(lab: VSwitchLab, guest: Guest) -> None:
    lab.reboot_guest(eni_present=False)
    routing = GuestRouting(mac=ENI_MAC, ip=ENI_IP, prefix=24, gateway=GATEWAY, wait_s=20)
    proc = guest.popen_script(render(routing, "apply"))
    time.sleep(1.5)
    assert proc.poll() is None                      # still waiting for the NIC
    lab.plug_nic("eth1", name="ens7", configure=False)   # arrives later, down, no address, another name
    out, err = proc.communicate(timeout=30)
    result = _result(ScriptRun(proc.returncode, out, err), 0)
    assert result.dev == "ens7" and result.status == "changed"
    assert "link ens7 set up" in result.changes and "address 192.168.3.11/24 added to ens7" in result.changes
    assert lab.inbound() == ENI_IP and lab.egress_ip() == SNAT_IP
    run(guest, "remove", routing)
    show = lab.ip("guest", "-o", "addr", "show", "dev", "ens7").stdout
    assert ENI_IP not in show and "UP" not in lab.ip("guest", "link", "show", "dev", "ens7").stdout.split(">")[0]


# ------------------------------------------------------------------------------ batches, refusals


def test_batch_applies_only_the_local_rows_and_refuses_a_foreign_batch(lab: VSwitchLab, guest: Guest) -> None:
    others = [GuestRouting(mac=f"00:16:3e:00:09:{i:02x}", ip=f"192.168.3.{50 + i}", prefix=24, gateway=GATEWAY,
                           wait_s=1) for i in range(5)]
    files = guest.files()
    foreign = _result(guest.run_script(render_batch(others, "apply")), 1)
    assert any("none of the 5 MAC(s) in this script is present on this instance" in e for e in foreign.errors)
    assert guest.files() == files and "lookup 20" not in lab.ip("guest", "rule", "show").stdout
    assert _result(guest.run_script(render_batch(others, "remove")), 0).status == "ok"

    mixed = _result(guest.run_script(render_batch([*others[:2], ENI, *others[2:]], "apply", encoding="gzip")), 0)
    assert [item.mac for item in mixed.items] == [ENI_MAC] and mixed.ip == ENI_IP
    assert lab.inbound() == ENI_IP
    assert _result(guest.run_script(render_batch([*others, ENI], "check", encoding="gzip")), 0).status == "ok"


def test_tampered_script_changes_nothing(lab: VSwitchLab, guest: Guest) -> None:
    files, kernel = guest.files(), lab.kernel_snapshot()
    script = render(ENI, "apply").replace("eni-bp1labtest0001 20001", "$(touch${IFS}/etc/egt-pwned) 20001")
    result = _result(guest.run_script(script), 1)
    assert any("invalid script values" in e for e in result.errors)
    assert guest.files() == files and lab.kernel_snapshot() == kernel
    assert not guest.root.host_path("/etc/egt-pwned").exists()


def test_apply_refuses_numbers_that_something_else_uses(lab: VSwitchLab, guest: Guest) -> None:
    lab.ip("guest", "rule", "add", "from", "10.9.9.9", "lookup", "100", "priority", "9001")
    files = guest.files()
    refused = run(guest, "apply", expect_rc=1)
    assert any("already used by something else" in e for e in refused.errors)
    assert guest.files() == files
    assert "lookup 20001" not in lab.ip("guest", "rule", "show").stdout
    slot2 = GuestRouting.for_slot(2, mac=ENI_MAC, ip=ENI_IP, prefix=24, gateway=GATEWAY)
    fine = run(guest, "apply", slot2)
    assert (fine.table, fine.priority) == (20002, 9002) and lab.inbound() == ENI_IP

    # another ENI's config (say eth2, not attached right now) already owns table 20003
    other = guest.root.host_path("/etc/egressctl/eni-bp1otherenieth2.conf")
    other.write_text(guest.root.host_path(slot2.conf_path).read_text()
                     .replace("00:16:3e:00:00:11", "00:16:3e:00:00:12").replace("192.168.3.11", "192.168.3.12")
                     .replace("20002", "20003").replace("9002", "9003"))
    clash = run(guest, "apply", GuestRouting.for_slot(3, mac=ENI_MAC, ip=ENI_IP, prefix=24, gateway=GATEWAY),
                expect_rc=1)
    assert any("collide with /etc/egressctl/eni-bp1otherenieth2.conf" in e for e in clash.errors), clash.errors
    assert "lookup 20003" not in lab.ip("guest", "rule", "show").stdout


def test_daemon_reload_only_when_systemd_runs_and_never_enable(lab: VSwitchLab) -> None:
    root = GuestRoot(lab.base / "root-systemd", systemd_running=True)
    log = root.base / "systemctl.log"
    fake = root.host_path("/usr/local/sbin/systemctl")
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    guest = Guest(lab, root)
    run(guest, "apply")
    run(guest, "apply")                             # unit unchanged: no reload
    run(guest, "remove")
    assert log.read_text().splitlines() == ["daemon-reload", "daemon-reload"]

    plain = Guest(lab, GuestRoot(lab.base / "root-plain"))   # no /run/systemd/system: never called
    fake2 = plain.root.host_path("/usr/local/sbin/systemctl")
    fake2.parent.mkdir(parents=True)
    fake2.write_text(f'#!/bin/sh\necho "$*" >> {log}.plain\n')
    fake2.chmod(0o755)
    run(plain, "apply")
    assert not Path(f"{log}.plain").exists()


def test_remove_after_the_nic_was_detached(lab: VSwitchLab, guest: Guest) -> None:
    run(guest, "apply")
    lab.ip("guest", "link", "del", "eth1")          # DetachNetworkInterface before the guest cleanup
    removed = run(guest, "remove")
    assert removed.status == "changed" and removed.dev is None
    assert "lookup 20001" not in lab.ip("guest", "rule", "show").stdout
    assert not guest.root.host_path(ENI.conf_path).exists()
    assert not guest.root.host_path("/usr/local/lib/egressctl/egress-routing.sh").exists()


def test_config_files_are_parsed_not_sourced(lab: VSwitchLab, guest: Guest) -> None:
    run(guest, "apply")
    conf = guest.root.host_path(ENI.conf_path)
    conf.write_text(conf.read_text().replace("EGRESSCTL_IP=192.168.3.11", "EGRESSCTL_IP=$(touch /etc/egt-pwned)"))
    lab.ip("guest", "rule", "del", "priority", "9001")
    reapplied = _result(guest.run(["/bin/sh", "/usr/local/lib/egressctl/egress-routing.sh", "reapply"]), 1)
    assert any("is invalid (ip: not an IPv4 address); ignored" in e for e in reapplied.errors), reapplied.errors
    assert not guest.root.host_path("/etc/egt-pwned").exists()
    assert "lookup 20001" not in lab.ip("guest", "rule", "show").stdout
    checked = run(guest, "check", expect_rc=1)
    assert any("is invalid" in e for e in checked.errors + checked.differences)


def test_an_address_a_dhcp_client_added_first_is_not_an_error(lab: VSwitchLab, guest: Guest) -> None:
    # The race: the script sees no address, a DHCP client adds it, the script's own add then fails
    # with "Address already assigned".  A shim `ip` on the guest's PATH (/usr/local/sbin comes first)
    # plays the client at exactly that moment.
    shim = guest.root.base / "local-upper" / "sbin" / "ip"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text('#!/bin/sh\nif [ "$1 $2 $3" = "-4 addr add" ]; then\n  /usr/sbin/ip "$@" >/dev/null 2>&1\n'
                    '  echo "Error: ipv4: Address already assigned." >&2\n  exit 2\nfi\nexec /usr/sbin/ip "$@"\n')
    shim.chmod(0o755)
    lab.ip("guest", "-4", "addr", "flush", "dev", "eth1")  # an image that leaves the NIC unconfigured
    result = run(guest, "apply")
    assert not result.errors, result.errors
    assert ENI_IP in lab.ip("guest", "-4", "addr", "show", "dev", "eth1").stdout
    assert lab.inbound() == ENI_IP
    shim.unlink()
    assert run(guest, "check").status == "ok"
