"""``vpclab``: run the local Alibaba Cloud.

``vpclab serve`` prints exactly one JSON line on stdout once it accepts requests, then serves
until SIGINT/SIGTERM.  Errors go to stderr with exit code 2.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from .lab import DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Lab
from .scenario import ScenarioError
from .store import StateError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="vpclab: a local Alibaba Cloud (ECS + VPC OpenAPI) for egressctl and your own automation.")


@app.callback()
def _root() -> None:
    pass


@app.command()
def serve(
    scenario: Annotated[Path | None, typer.Option(help="YAML scenario to build the world from")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one")] = 0,
    state_dir: Annotated[Path | None, typer.Option(help="keep state here across restarts (sqlite)")] = None,
    latency: Annotated[str, typer.Option(help="instant | realistic | FILE")] = "instant",
    time_scale: Annotated[float, typer.Option(help="multiply every latency and throttle window by this")] = 1.0,
    throttle: Annotated[str, typer.Option(help="off | default | FILE (per-action limits)")] = "default",
    convert_rule: Annotated[str, typer.Option(help="ConvertNatPublicIpToEip rule for PrePaid: current | legacy")
                            ] = "current",
    access_key_id: Annotated[str, typer.Option(envvar="VPCLAB_ACCESS_KEY_ID")] = DEFAULT_ACCESS_KEY_ID,
    access_key_secret: Annotated[str, typer.Option(envvar="VPCLAB_ACCESS_KEY_SECRET", show_default=False,
                                                   help="(default: the documented lab secret)")
                                 ] = DEFAULT_ACCESS_KEY_SECRET,
) -> None:
    """Serve the ECS and VPC OpenAPI on HTTP until SIGINT/SIGTERM."""
    try:
        lab = Lab(scenario, state_dir=state_dir, latency=latency, time_scale=time_scale, throttle=throttle,
                  access_key_id=access_key_id, access_key_secret=access_key_secret, host=host, port=port,
                  convert_rule=convert_rule)
    except (ScenarioError, StateError, ValueError) as e:
        typer.echo(f"vpclab: {e}", err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        lab.start()
    except OSError as e:
        typer.echo(f"vpclab: cannot listen on {host}:{port}: {e.strerror}", err=True)
        raise typer.Exit(2) from None
    sys.stdout.write(lab.ready_line() + "\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        lab.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
