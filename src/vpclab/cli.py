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
    dataplane: Annotated[str, typer.Option(help="auto | on | off: real packets in network namespaces (root)")
                         ] = "auto",
    faults: Annotated[Path | None, typer.Option(help="fault injection plan (YAML; see docs/reliability.md)")
                      ] = None,
) -> None:
    """Serve the ECS and VPC OpenAPI on HTTP until SIGINT/SIGTERM."""
    try:
        from .faults import Faults

        plan = Faults.load(faults) if faults is not None else None
        lab = Lab(scenario, state_dir=state_dir, latency=latency, time_scale=time_scale, throttle=throttle,
                  access_key_id=access_key_id, access_key_secret=access_key_secret, host=host, port=port,
                  convert_rule=convert_rule, dataplane=dataplane, faults=plan)
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
    except RuntimeError as e:
        typer.echo(f"vpclab: {e}", err=True)
        raise typer.Exit(2) from None
    sys.stdout.write(lab.ready_line() + "\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        lab.stop()


def _lab_registry(lab: str | None) -> dict:
    from .dataplane import registries

    regs = [r for r in registries() if r["alive"]]
    if lab:
        regs = [r for r in regs if r["prefix"] == lab]
        if not regs:
            typer.echo(f"vpclab: no running lab {lab!r} (see `vpclab status`)", err=True)
            raise typer.Exit(2)
    if len(regs) != 1:
        typer.echo("vpclab: " + ("no running lab with a data plane" if not regs else
                                 f"{len(regs)} labs run: pick one with --lab ({', '.join(r['prefix'] for r in regs)})"),
                   err=True)
        raise typer.Exit(2)
    return regs[0]


@app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="instance id or name, echo (internet), operator")],
    lab: Annotated[str | None, typer.Option(help="the lab's prefix (when several run)")] = None,
) -> None:
    """Run a command on a lab host: ``vpclab exec web-1 -- ip rule``."""
    import os

    reg = _lab_registry(lab)
    argv = list(ctx.args)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        argv = ["/bin/sh"]
    ns = reg["hosts"].get(host)
    if ns is None:
        typer.echo(f"vpclab: no host {host!r} in lab {reg['prefix']} (hosts: {', '.join(sorted(reg['hosts']))})",
                   err=True)
        raise typer.Exit(2)
    iid = next((k for k, v in reg["hosts"].items() if v == ns and k.startswith("i-")), None)
    root = reg.get("guest_roots", {}).get(iid) if iid else None
    if root:
        from .dataplane.guests import GuestRoot

        full = GuestRoot(Path(root)).wrap(ns, argv)
    else:
        full = ["ip", "netns", "exec", ns, *argv]
    os.execvp(full[0], full)


@app.command()
def status(
    lab: Annotated[str | None, typer.Option(help="only this lab")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """List the labs with a data plane on this machine, and what they contain."""
    import json

    from .dataplane import registries

    regs = [r for r in registries() if not lab or r["prefix"] == lab]
    if json_out:
        typer.echo(json.dumps(regs))
        return
    if not regs:
        typer.echo("no lab with a data plane on this machine")
    for r in regs:
        state = "running" if r["alive"] else "STALE (its process is gone: `vpclab clean`)"
        typer.echo(f"lab {r['prefix']} (pid {r.get('pid')}, {state}): {len(r.get('namespaces', []))} namespaces, "
                   f"API in the operator host at {r.get('api') or '-'}, echo {r.get('echo_url')}")
        for name, ns in sorted(r.get("hosts", {}).items()):
            typer.echo(f"  {name:32} {ns}")


@app.command()
def clean(
    lab: Annotated[str | None, typer.Option(help="this lab only (refused while it runs, unless --force)")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="what a previous run with this state dir left")] = None,
    force: Annotated[bool, typer.Option(help="also a lab whose process still runs")] = False,
) -> None:
    """Remove what labs left behind: their namespaces and files, and only theirs."""
    from .dataplane import clean_registry, registries

    removed: list[str] = []
    if state_dir is not None:
        removed += clean_registry(state_dir / "dataplane.json")
    for r in registries():
        if lab and r["prefix"] != lab:
            continue
        if r["alive"] and not force:
            if lab:
                typer.echo(f"vpclab: lab {lab} is running (pid {r.get('pid')}); stop it, or use --force", err=True)
                raise typer.Exit(2)
            continue
        removed += clean_registry(Path(r["registry"]))
    typer.echo(f"removed {len(removed)} namespaces" + (f": {', '.join(removed)}" if removed else ""))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
