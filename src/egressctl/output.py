"""Presenting results: tables and progress for people (rich), JSON for machines."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# not a terminal (a pipe, a CI log): wide enough that ids and addresses never wrap.  Markup is off: names,
# tags, descriptions and error messages come from the cloud and are printed as they are ("[/]" in an
# instance name must neither crash the output nor style it); styles are set with Text objects.
err = Console(stderr=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160,
              soft_wrap=not sys.stdout.isatty())


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def audit_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="egress audit", show_lines=False)
    t.add_column("instance", no_wrap=True)
    t.add_column("name", overflow="fold")
    t.add_column("egress now", no_wrap=True)
    t.add_column("after", no_wrap=True)
    t.add_column("inbound", no_wrap=True)
    t.add_column("action", no_wrap=True)
    for r in rows:
        now, after = r["egress_now"], r["egress_after"]
        style = {"migrate": "yellow", "blocked": "red", "ok": "green", "skip": "dim"}.get(r["action"], "")
        t.add_row(r["instance_id"], r["name"], f"{now['kind']} {now['ip'] or ''}".strip(),
                  f"{after['kind']} {after['ip'] or ''}".strip(), r["inbound_ip"] or "-",
                  Text(r["action"], style=style))
    return t


def reasons_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        for x in r["reasons"]:
            fix = f" [{x['fix']}]" if x.get("fix") else ""
            out.append(f"{r['action']:7} {r['instance_id']} {r['name']}: {x['message']}{fix}")
    return out
