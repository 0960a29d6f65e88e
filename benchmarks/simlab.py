"""vpclab with a SIMULATED guest, for benchmarks only.

Cloud Assistant commands do not run anywhere: each takes a simulated guest latency and answers the
way the routing script (or the egress probe) would.  This lives in benchmarks/, not in the product,
and labels itself in its ready line (``"guest": "SIMULATED"``) and on stderr, so a result measured
with it can never be mistaken for a real guest run.

    python benchmarks/simlab.py --scenario FILE [--latency realistic] [--time-scale X]
        [--throttle FILE] [--guest-latency S]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vpclab import Lab
from vpclab.egress import source_ip_for
from vpclab.resources.assistant import CommandResult, CommandRun

LABEL = "SIMULATED"


class SimulatedGuest:
    """Answers like the guest would, after a (scaled) delay.  Never runs a command."""

    def __init__(self, latency_s: float, world):
        self.latency_s = latency_s
        self.world = world
        self.runs = 0

    def run(self, run: CommandRun) -> CommandResult:
        self.runs += 1
        time.sleep(self.latency_s)
        if "EGRESSCTL_PROBE" in run.script:
            with self.world.lock:
                ip = source_ip_for(self.world, run.instance_id)
            return CommandResult(0, f"EGRESSCTL_PROBE begin\n{LABEL} guest: {ip}\nEGRESSCTL_PROBE end rc=0\n")
        mode = (re.search(r"^EGRESSCTL_MODE=(\w+)$", run.script, re.M) or [None, "apply"])[1]
        body = {"version": 1, "mode": mode, "status": "changed", "eni": None, "mac": None, "ip": None,
                "prefix": None, "gateway": None, "table": None, "priority": None, "dev": None, "rp_filter": None,
                "changes": [f"{LABEL}: nothing ran"], "differences": [], "errors": [], "items": []}
        return CommandResult(0, f"{LABEL} guest\nEGRESSCTL_RESULT {json.dumps(body)}\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--latency", default="instant")
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--throttle", default="off")
    ap.add_argument("--guest-latency", type=float, default=2.0, help="seconds per command, before --time-scale")
    a = ap.parse_args()
    lab = Lab(a.scenario, latency=a.latency, time_scale=a.time_scale, throttle=a.throttle)
    lab.world.executor = SimulatedGuest(a.guest_latency * a.time_scale, lab.world)
    lab.start()
    print(lab.ready_line(guest=LABEL), flush=True)
    print(f"simlab: the guest is {LABEL} (no command runs anywhere)", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    lab.stop()


if __name__ == "__main__":
    main()
