"""Render the guest-side policy-routing script and parse its result line (docs/guest-routing.md).

The shell logic lives in ``routing.sh`` (package data). A rendered script is a short POSIX ``sh``
wrapper: a block of variable assignments (the mode and one row per ENI), the routing logic
embedded verbatim (minus comments), and one line that runs it. Every value in the block comes from
a validated :class:`GuestRouting` field (MAC, IPv4 addresses, integers, an ENI id matching its
pattern) and is checked again against a strict pattern when the block is built, so a free-form
string (instance name, tag, description) cannot reach the script text. The shell re-validates the
rows before it uses them.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Literal, get_args

Mode = Literal["apply", "check", "remove"]
Encoding = Literal["plain", "gzip"]
Status = Literal["ok", "changed", "drift", "error"]

MODES: tuple[str, ...] = get_args(Mode)
ENCODINGS: tuple[str, ...] = get_args(Encoding)
STATUSES: tuple[str, ...] = get_args(Status)

#: Numbering scheme (docs/guest-routing.md): slot n (1..999) of an instance uses table 20000+n and
#: rule priority 9000+n. No other guest tool we know of uses these ranges, and 9xxx is below every
#: other tool's source rules, so the ENI's rule is evaluated first.
TABLE_BASE = 20000
PRIORITY_BASE = 9000
SLOT_MAX = 999
TABLE_MIN, TABLE_MAX = TABLE_BASE + 1, TABLE_BASE + SLOT_MAX
PRIORITY_MIN, PRIORITY_MAX = PRIORITY_BASE + 1, PRIORITY_BASE + SLOT_MAX
PREFIX_MIN, PREFIX_MAX = 16, 29
WAIT_MAX_S = 600
DEFAULT_WAIT_S = 30
#: Routes the script adds carry this rtnetlink protocol number ("proto 236").
ROUTE_PROTO = 236
MAX_BATCH_ROWS = 200
#: Cloud Assistant limit on CommandContent, in bytes of the *plain* script. Alibaba's docs give 24 KB
#: for the Base64-encoded content of a RunCommand that is not kept and 18 KB for a kept command
#: (CreateCommand, ROS); not measured here. Base64 grows text by 4/3. Use ``encoding="gzip"`` and
#: :func:`split_batch` to stay below it.
COMMAND_CONTENT_LIMIT = 24 * 1024 * 3 // 4
COMMAND_CONTENT_LIMIT_KEPT = 18 * 1024 * 3 // 4
RESULT_PREFIX = "EGRESSCTL_RESULT "

INSTALLED_SCRIPT = "/usr/local/lib/egressctl/egress-routing.sh"
CONF_DIR = "/etc/egressctl"
UNIT_PATH = "/etc/systemd/system/egressctl-routing.service"
WANTS_LINK = "/etc/systemd/system/multi-user.target.wants/egressctl-routing.service"
NM_HOOK = "/etc/NetworkManager/dispatcher.d/90-egressctl-routing"
NETWORKD_HOOK = "/etc/networkd-dispatcher/routable.d/50-egressctl-routing"

_MAC_IN = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")
_MAC_OUT = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_ENI_ID = re.compile(r"eni-[a-z0-9]{8,32}")
_IPV4_TEXT = re.compile(r"(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}")
_ROW = re.compile(
    r"[0-9a-f]{2}(:[0-9a-f]{2}){5} [0-9.]{7,15} [1-9][0-9] [0-9.]{7,15} (-|eni-[a-z0-9]{8,32}) "
    r"2[0-9]{4} 9[0-9]{3} (0|[1-9][0-9]{0,2})"
)
_LIB_END = "EGRESSCTL_LIB_END"


class GuestValueError(ValueError):
    """A value for the guest script does not validate; ``field`` names the offending field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class GuestResultError(ValueError):
    """The output of a guest script has no usable ``EGRESSCTL_RESULT`` line."""


def scheme_numbers(slot: int = 1) -> tuple[int, int]:
    """(table, priority) of slot ``slot`` (1 for an instance's first egressctl ENI)."""
    _int_in("slot", slot, 1, SLOT_MAX)
    return TABLE_BASE + slot, PRIORITY_BASE + slot


def _int_in(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GuestValueError(name, f"must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise GuestValueError(name, f"must be in {low}..{high}, got {value}")
    return value


def _mac(value: object) -> str:
    if not isinstance(value, str):
        raise GuestValueError("mac", f"must be a str, not {type(value).__name__}")
    if not value.isascii() or not _MAC_IN.fullmatch(value):
        raise GuestValueError("mac", "must look like aa:bb:cc:dd:ee:ff (or with '-')")
    mac = value.lower().replace("-", ":")
    first = int(mac[:2], 16)
    if first & 1:
        raise GuestValueError("mac", "is a multicast/broadcast address, not a NIC's")
    if mac == "00:00:00:00:00:00":
        raise GuestValueError("mac", "is all zeros")
    return mac


def _ipv4(name: str, value: object) -> ipaddress.IPv4Address:
    if isinstance(value, ipaddress.IPv4Address):
        address = value
    elif isinstance(value, str):
        if not value.isascii() or not _IPV4_TEXT.fullmatch(value):
            raise GuestValueError(name, "must be a dotted-quad IPv4 address")
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError as exc:
            raise GuestValueError(name, str(exc)) from None
    else:
        raise GuestValueError(name, f"must be an IPv4Address or str, not {type(value).__name__}")
    if (address.is_unspecified or address.is_loopback or address.is_multicast or address.is_link_local
            or address.is_reserved):
        raise GuestValueError(name, f"{address} cannot be a VPC address")
    return address


@dataclass(frozen=True, kw_only=True)
class GuestRouting:
    """The validated values for one secondary ENI; the only input :func:`render` accepts.

    ``prefix`` is the vSwitch prefix length, ``gateway`` the vSwitch gateway (metadata
    ``.../macs/<mac>/gateway``), ``table``/``priority`` the numbers of :func:`scheme_numbers` and
    ``wait_s`` how long ``apply`` waits for a hot-plugged NIC with ``mac`` to appear.
    """

    mac: str
    ip: ipaddress.IPv4Address
    prefix: int
    gateway: ipaddress.IPv4Address
    eni_id: str | None = None
    table: int = TABLE_MIN
    priority: int = PRIORITY_MIN
    wait_s: int = DEFAULT_WAIT_S

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "mac", _mac(self.mac))
        put(self, "ip", _ipv4("ip", self.ip))
        _int_in("prefix", self.prefix, PREFIX_MIN, PREFIX_MAX)
        put(self, "gateway", _ipv4("gateway", self.gateway))
        if self.eni_id is not None:
            if not isinstance(self.eni_id, str):
                raise GuestValueError("eni_id", f"must be a str or None, not {type(self.eni_id).__name__}")
            if not self.eni_id.isascii() or not _ENI_ID.fullmatch(self.eni_id):
                raise GuestValueError("eni_id", "must match eni-[a-z0-9]{8,32}")
        _int_in("table", self.table, TABLE_MIN, TABLE_MAX)
        _int_in("priority", self.priority, PRIORITY_MIN, PRIORITY_MAX)
        _int_in("wait_s", self.wait_s, 0, WAIT_MAX_S)
        network = self.network
        if self.ip in (network.network_address, network.broadcast_address):
            raise GuestValueError("ip", f"{self.ip} is the network or broadcast address of {network}")
        if self.gateway not in network:
            raise GuestValueError("gateway", f"{self.gateway} is not inside {network}")
        if self.gateway == self.ip:
            raise GuestValueError("gateway", "must differ from ip")
        if self.gateway in (network.network_address, network.broadcast_address):
            raise GuestValueError("gateway", f"{self.gateway} is the network or broadcast address of {network}")

    @classmethod
    def for_slot(cls, slot: int = 1, **values: Any) -> GuestRouting:
        """A routing with the table and priority of ``slot`` in the numbering scheme."""
        table, priority = scheme_numbers(slot)
        return cls(table=table, priority=priority, **values)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.ip}/{self.prefix}", strict=False)

    @property
    def conf_path(self) -> str:
        """The config file ``apply`` writes for this ENI."""
        name = self.eni_id or "eni-mac-" + self.mac.replace(":", "")
        return f"{CONF_DIR}/{name}.conf"

    def row(self) -> str:
        """The row of the script's value block: MAC IP PREFIX GATEWAY ENI_ID|- TABLE PRIORITY WAIT_S."""
        line = "%s %s %d %s %s %d %d %d" % (  # noqa: UP031 - %d makes the int formatting explicit
            self.mac, str(self.ip), self.prefix, str(self.gateway), self.eni_id or "-",
            self.table, self.priority, self.wait_s,
        )
        if not _ROW.fullmatch(line):  # defence in depth: nothing but validated tokens
            raise GuestValueError("row", "rendered row does not match the row pattern")
        return line


# ------------------------------------------------------------------------------------ rendering


@lru_cache(maxsize=1)
def template_text() -> str:
    """The annotated shell template ``routing.sh`` as shipped in the package."""
    return resources.files("egressctl.guest").joinpath("routing.sh").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def embedded_script() -> str:
    """The routing logic as embedded in rendered scripts and installed on the guest.

    This is ``routing.sh`` without comment lines, blank lines and indentation (the template keeps
    every line either code or a comment so that this is safe); shellcheck directives are kept.
    """
    lines = template_text().splitlines()
    out = [lines[0], "# egressctl guest routing (comments stripped; annotated source: egressctl/guest/routing.sh,",
           "# docs/guest-routing.md). Installed and removed by egressctl; do not edit."]
    for line in lines[1:]:
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("# shellcheck ")):
            continue
        out.append(stripped)
    text = "\n".join(out) + "\n"
    if any(line == _LIB_END for line in out):
        raise RuntimeError("routing.sh contains the heredoc terminator")
    return text


@lru_cache(maxsize=1)
def _gzip_chunks() -> tuple[str, ...]:
    payload = gzip.compress(embedded_script().encode("utf-8"), compresslevel=9, mtime=0)
    return tuple(textwrap.wrap(base64.b64encode(payload).decode("ascii"), 100))


def _check_mode(mode: object) -> str:
    if mode not in MODES:
        raise GuestValueError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    return str(mode)


def _error_line(mode: str, message: str) -> str:
    nulls = dict.fromkeys(("eni", "mac", "ip", "prefix", "gateway", "table", "priority", "dev", "rp_filter"))
    body = {"version": 1, "mode": mode, "status": "error", **nulls, "changes": [], "differences": [],
            "errors": [message], "items": []}
    return RESULT_PREFIX + json.dumps(body, separators=(",", ":"))


def render(routing: GuestRouting, mode: Mode = "apply", *, encoding: Encoding = "plain") -> str:
    """The script for one ENI in ``mode``; see :func:`render_batch`."""
    if not isinstance(routing, GuestRouting):
        raise TypeError(f"render() takes a GuestRouting, not {type(routing).__name__}")
    return render_batch([routing], mode, encoding=encoding)


def render_batch(rows: Sequence[GuestRouting], mode: Mode = "apply", *, encoding: Encoding = "plain") -> str:
    """One script carrying a row per ENI; each guest acts on the rows whose MAC it has.

    ``apply`` waits up to the largest ``wait_s`` for one of the MACs to appear; a guest that has
    none of them exits 1 with a clear message (``remove`` reports nothing to remove and exits 0).
    ``encoding="plain"`` embeds the logic as readable text; ``"gzip"`` embeds it gzip+base64
    (needs ``base64`` and ``gzip`` on the guest) to fit Cloud Assistant's size limit.
    """
    mode = _check_mode(mode)
    if encoding not in ENCODINGS:
        raise GuestValueError("encoding", f"must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError("render_batch() takes a sequence of GuestRouting")
    if not rows:
        raise GuestValueError("rows", "at least one row is needed")
    if len(rows) > MAX_BATCH_ROWS:
        raise GuestValueError("rows", f"at most {MAX_BATCH_ROWS} rows per script, got {len(rows)}")
    seen: set[str] = set()
    lines = []
    for row in rows:
        if not isinstance(row, GuestRouting):
            raise TypeError(f"render_batch() rows must be GuestRouting, not {type(row).__name__}")
        if row.mac in seen:
            raise GuestValueError("rows", f"mac {row.mac} appears twice")
        seen.add(row.mac)
        lines.append(row.row())
    header = [
        "#!/bin/sh",
        "# egressctl guest routing script (rendered; do not edit). See docs/guest-routing.md.",
        "# Values below come only from validated typed fields: MAC, IPv4 addresses, integers, ENI id.",
        "# Row: MAC IP PREFIX GATEWAY ENI_ID(- if none) TABLE PRIORITY WAIT_S",
        f"EGRESSCTL_MODE={mode}",
        "EGRESSCTL_ROWS='",
        *lines,
        "'",
    ]
    if encoding == "plain":
        body = ["egressctl_lib() {", f"\tcat <<'{_LIB_END}'", embedded_script() + _LIB_END, "}"]
    else:
        chunks = _gzip_chunks()
        body = ["egressctl_lib() {", "\tprintf '%s' \\", *[f"\t\t'{c}' \\" for c in chunks[:-1]],
                f"\t\t'{chunks[-1]}' | base64 -d | gzip -dc", "}"]
    decode_error = _error_line(mode, "cannot unpack the embedded routing script (needs cat, or base64 and gzip)")
    tail = [
        'EGRESSCTL_LIB=$(egressctl_lib) || EGRESSCTL_LIB=""',
        'case $EGRESSCTL_LIB in',
        "'#!/bin/sh'*) ;;",
        "*)",
        f"\techo '{decode_error}'",
        "\texit 1",
        "\t;;",
        "esac",
        "export EGRESSCTL_ROWS EGRESSCTL_LIB",
        'exec /bin/sh -c "$EGRESSCTL_LIB" egress-routing.sh "$EGRESSCTL_MODE"',
    ]
    return "\n".join(header + body + tail) + "\n"


def split_batch(rows: Sequence[GuestRouting], mode: Mode = "apply", *, encoding: Encoding = "gzip",
                limit: int = COMMAND_CONTENT_LIMIT) -> list[list[GuestRouting]]:
    """Split ``rows`` into consecutive groups whose rendered scripts are at most ``limit`` bytes."""
    groups: list[list[GuestRouting]] = []
    current: list[GuestRouting] = []
    for row in rows:
        candidate = [*current, row]
        if len(candidate) <= MAX_BATCH_ROWS and len(render_batch(candidate, mode, encoding=encoding)) <= limit:
            current = candidate
            continue
        if not current:
            raise GuestValueError("limit", f"a script with a single row is larger than {limit} bytes")
        groups.append(current)
        current = [row]
        if len(render_batch(current, mode, encoding=encoding)) > limit:
            raise GuestValueError("limit", f"a script with a single row is larger than {limit} bytes")
    if current:
        groups.append(current)
    return groups


# ------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class GuestItemResult:
    """What the script did or found for one ENI."""

    status: Status
    eni: str | None
    mac: str
    ip: str
    prefix: int
    gateway: str
    table: int
    priority: int
    dev: str | None
    rp_filter: int | None
    changes: tuple[str, ...] = ()
    differences: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class GuestResult:
    """The parsed ``EGRESSCTL_RESULT`` line. ``eni``/``ip``/... are set when exactly one ENI was handled."""

    mode: str
    status: Status
    eni: str | None
    mac: str | None
    ip: str | None
    dev: str | None
    table: int | None
    priority: int | None
    rp_filter: int | None
    changes: tuple[str, ...]
    differences: tuple[str, ...]
    errors: tuple[str, ...]
    items: tuple[GuestItemResult, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True for ``ok`` and ``changed`` (exit status 0)."""
        return self.status in ("ok", "changed")


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise GuestResultError(f"result field {key!r} is not a list of strings")
    return tuple(value)


def _opt(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise GuestResultError(f"result field {key!r} is not {kind.__name__} or null")
    return value


def _item(data: object) -> GuestItemResult:
    if not isinstance(data, dict):
        raise GuestResultError("result item is not an object")
    status = data.get("status")
    if status not in STATUSES:
        raise GuestResultError(f"result item status {status!r} is unknown")
    try:
        return GuestItemResult(
            status=status, eni=_opt(data, "eni", str), mac=str(data["mac"]), ip=str(data["ip"]),
            prefix=int(data["prefix"]), gateway=str(data["gateway"]), table=int(data["table"]),
            priority=int(data["priority"]), dev=_opt(data, "dev", str), rp_filter=_opt(data, "rp_filter", int),
            changes=_strings(data, "changes"), differences=_strings(data, "differences"),
            errors=_strings(data, "errors"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, GuestResultError):
            raise
        raise GuestResultError(f"result item is incomplete: {exc}") from None


def parse_result(stdout: str) -> GuestResult:
    """Parse the last ``EGRESSCTL_RESULT {json}`` line of a guest script's output.

    The script prints it as its last stdout line; the last such line is used so that output a
    runner appends afterwards (for example stderr) does not matter.
    """
    if not isinstance(stdout, str):
        raise TypeError("parse_result() takes the script's stdout as str")
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise GuestResultError("no EGRESSCTL_RESULT line in the output (the script did not finish?)")
    try:
        data = json.loads(line[len(RESULT_PREFIX):])
    except json.JSONDecodeError as exc:
        raise GuestResultError(f"EGRESSCTL_RESULT line is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GuestResultError("EGRESSCTL_RESULT is not a JSON object")
    status = data.get("status")
    if status not in STATUSES:
        raise GuestResultError(f"EGRESSCTL_RESULT status {status!r} is unknown")
    mode = data.get("mode")
    if not isinstance(mode, str):
        raise GuestResultError("EGRESSCTL_RESULT has no mode")
    items = data.get("items", [])
    if not isinstance(items, list):
        raise GuestResultError("EGRESSCTL_RESULT items is not a list")
    return GuestResult(
        mode=mode, status=status, eni=_opt(data, "eni", str), mac=_opt(data, "mac", str), ip=_opt(data, "ip", str),
        dev=_opt(data, "dev", str), table=_opt(data, "table", int), priority=_opt(data, "priority", int),
        rp_filter=_opt(data, "rp_filter", int), changes=_strings(data, "changes"),
        differences=_strings(data, "differences"), errors=_strings(data, "errors"),
        items=tuple(_item(i) for i in items), raw=data,
    )
