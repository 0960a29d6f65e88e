"""Inside an emulated instance: running commands (Cloud Assistant), and what happens at boot.

Every command runs in the instance's network namespace *and* a private mount namespace where
``/etc`` and ``/usr/local`` are overlays on the host's (writes land in the instance's own upper
directories, never in the host's /etc) and ``/run/systemd`` is an empty directory (no host systemd is
ever asked to do anything).  A reboot forgets the kernel's network state, configures the NICs as
the image does, then runs the systemd units the guest enabled, from that private view.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from ..resources.assistant import CommandResult, CommandRun
from . import kernel

WANTS = "systemd/system/multi-user.target.wants"


class GuestRoot:
    """The instance's private files: overlay upper/work directories and an empty /run/systemd."""

    def __init__(self, base: Path):
        self.base = base
        self.etc, self.local = base / "etc-upper", base / "local-upper"
        for d in (self.etc, self.local, base / "etc-work", base / "local-work", base / "run-systemd"):
            d.mkdir(parents=True, exist_ok=True)
        # the lab's image ships NetworkManager and networkd-dispatcher hook directories
        for d in ("systemd/system/multi-user.target.wants", "NetworkManager/dispatcher.d",
                  "networkd-dispatcher/routable.d"):
            (self.etc / d).mkdir(parents=True, exist_ok=True)

    def wrap(self, netns: str, argv: list[str]) -> list[str]:
        b = self.base
        mounts = (
            f"mount -t overlay vlab-etc -o lowerdir=/etc,upperdir={b}/etc-upper,workdir={b}/etc-work /etc"
            f" && mount -t overlay vlab-local -o lowerdir=/usr/local,upperdir={b}/local-upper,"
            f"workdir={b}/local-work /usr/local"
            f" && if [ -d /run/systemd ]; then mount --bind {b}/run-systemd /run/systemd; fi"
        )
        return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                f'{mounts} && exec ip netns exec "$0" "$@"', netns, *argv]

    def enabled_units(self) -> list[tuple[str, str]]:
        """(unit name, ExecStart) of every unit enabled for multi-user.target in the guest's view."""
        out = []
        wants = self.etc / WANTS
        for link in sorted(wants.glob("*.service")) if wants.is_dir() else []:
            unit = self.etc / "systemd/system" / link.name
            if not unit.is_file():
                continue
            for line in unit.read_text(errors="replace").splitlines():
                m = re.match(r"^\s*ExecStart=-?(.+)$", line)
                if m:
                    out.append((link.name, m.group(1).strip()))
        return out


class GuestExecutor:
    """Cloud Assistant's executor for the data plane (``world.executor``)."""

    def __init__(self, plane: object):
        self.plane = plane  # vpclab.dataplane.DataPlane: knows namespaces and guest roots

    def run(self, run: CommandRun) -> CommandResult:
        ns = self.plane.instance_ns(run.instance_id)  # type: ignore[attr-defined]
        root = self.plane.guest_root(run.instance_id)  # type: ignore[attr-defined]
        if ns is None or root is None:
            return CommandResult(-1, "", error_code="InstanceNotRunning",
                                 error_info="the instance has no namespace in the data plane")
        self.plane.wait_synced(min(run.timeout_s, 120))  # type: ignore[attr-defined]  # (runs late, not wrong)
        workdir = run.working_dir if run.working_dir.startswith("/") else "/root"
        inner = f"cd {shlex.quote(workdir)} 2>/dev/null || cd /; exec /bin/sh -s"
        return execute(root.wrap(ns, ["/bin/sh", "-c", inner]), run.script, run.timeout_s)


def execute(argv: list[str], stdin: str, timeout_s: float) -> CommandResult:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env=_guest_env())
    try:
        out, _ = proc.communicate(stdin, timeout=timeout_s)
        return CommandResult(proc.returncode, out)
    except subprocess.TimeoutExpired:
        kernel.kill_group(proc)
        out, _ = proc.communicate()
        return CommandResult(-1, out or "", timed_out=True)


def _guest_env() -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
            "LANG": "C.UTF-8", "TERM": "dumb"}


def run_units(root: GuestRoot, ns: str, timeout_s: float = 60) -> list[tuple[str, int, str]]:
    """What systemd would run at boot for the enabled units; returns (unit, exit code, output)."""
    results = []
    for name, exec_start in root.enabled_units():
        t0 = time.monotonic()
        res = execute(root.wrap(ns, ["/bin/sh", "-c", exec_start]), "", timeout_s)
        results.append((name, res.exit_code, res.output[-2000:]))
        _ = time.monotonic() - t0
    return results


def remove_root(base: Path) -> None:
    if base.exists():
        shutil.rmtree(base, ignore_errors=True)


def which_missing() -> list[str]:
    return [t for t in ("unshare", "mount") if shutil.which(t) is None] + (
        [] if os.path.isdir("/usr/local") else ["/usr/local"])
