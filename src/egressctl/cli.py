"""egressctl command line (commands arrive with the egressctl issue)."""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="egressctl: unify the public egress IP of "
                  "ECS instances with a fixed public IP (audit, plan, apply, verify, rollback).")


@app.callback()
def _root() -> None:
    pass


@app.command()
def version() -> None:
    """Print the version."""
    from . import __version__

    typer.echo(__version__)


def main() -> None:
    app()
