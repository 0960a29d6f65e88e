"""Rendering and validation of the guest routing script (no root needed).

Hostile strings (as they could come from instance names, tags or descriptions) must never reach a
script: GuestRouting refuses them, render() accepts nothing else, and the shell refuses rows that
were tampered with after rendering.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import ipaddress
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from egressctl.guest import script as gs
from egressctl.guest.script import (
    COMMAND_CONTENT_LIMIT,
    COMMAND_CONTENT_LIMIT_KEPT,
    GuestResultError,
    GuestRouting,
    GuestValueError,
    embedded_script,
    parse_result,
    render,
    render_batch,
    scheme_numbers,
    split_batch,
    template_text,
)

SHELLCHECK = shutil.which("shellcheck")
needs_shellcheck = pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (apt install shellcheck)")

GOOD = {"mac": "00:16:3e:00:00:11", "ip": "192.168.3.11", "prefix": 24, "gateway": "192.168.3.253"}
ROW_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5} [0-9.]+ [0-9]+ [0-9.]+ (-|eni-[a-z0-9]{8,32}) [0-9]+ [0-9]+ [0-9]+")
HOSTILE = [
    "$(reboot)", "`reboot`", "'; reboot; '", '"; reboot; "', "\nreboot\n", "a b", "x\x00y", "${IFS}",
    "eth1; rm -rf /", "web-01 (prod) \u2013 \u00e9t\u00e9", "\u202ereboot", "*", "../../etc/passwd", "\\", "%s%n",
]


def routing(**overrides: object) -> GuestRouting:
    return GuestRouting(**{**GOOD, **overrides})


def value_block(script: str) -> list[str]:
    """The lines between the header comments and the embedded logic."""
    lines = script.splitlines()
    end = lines.index("egressctl_lib() {")
    return [ln for ln in lines[:end] if not ln.startswith("#")]


def extract_plain_lib(script: str) -> str:
    start = script.index("<<'EGRESSCTL_LIB_END'\n") + len("<<'EGRESSCTL_LIB_END'\n")
    return script[start:script.index("\nEGRESSCTL_LIB_END\n", start) + 1]


def extract_gzip_lib(script: str) -> str:
    payload = "".join(re.findall(r"^\t\t'([A-Za-z0-9+/=]+)'", script, flags=re.M))
    return gzip.decompress(base64.b64decode(payload)).decode()


# ------------------------------------------------------------------------------ validation


def test_values_are_normalised_and_defaults_follow_the_scheme() -> None:
    r = routing(mac="00-16-3E-00-00-11", eni_id="eni-bp1abcdefgh")
    assert r.mac == "00:16:3e:00:00:11"
    assert r.ip == ipaddress.IPv4Address("192.168.3.11") and r.gateway == ipaddress.IPv4Address("192.168.3.253")
    assert (r.table, r.priority, r.wait_s) == (20001, 9001, gs.DEFAULT_WAIT_S)
    assert r.network == ipaddress.IPv4Network("192.168.3.0/24")
    assert r.conf_path == "/etc/egressctl/eni-bp1abcdefgh.conf"
    assert routing().conf_path == "/etc/egressctl/eni-mac-00163e000011.conf"
    assert r.row() == "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253 eni-bp1abcdefgh 20001 9001 30"
    assert routing(ip=ipaddress.IPv4Address("192.168.3.11")).ip == r.ip


def test_scheme_numbers_and_slots() -> None:
    assert scheme_numbers() == (20001, 9001)
    assert scheme_numbers(7) == (20007, 9007)
    r = GuestRouting.for_slot(3, **GOOD)
    assert (r.table, r.priority) == (20003, 9003)
    for bad in (0, 1000, True, "1"):
        with pytest.raises(GuestValueError):
            scheme_numbers(bad)  # type: ignore[arg-type]


BAD_VALUES = [
    ("mac", "00:16:3e:00:00"), ("mac", "00:16:3e:00:00:1g"), ("mac", "01:00:5e:00:00:01"),
    ("mac", "ff:ff:ff:ff:ff:ff"), ("mac", "00:00:00:00:00:00"), ("mac", "00:16:3e:00:00:11\n"),
    ("mac", "00:16:3e:00:00:11; reboot"), ("mac", "00:16-3e:00:00:11"), ("mac", "\uff10\uff10:16:3e:00:00:11"),
    ("mac", 0x00163E000011), ("mac", None),
    ("ip", "192.168.3.011"), ("ip", "192.168.3.256"), ("ip", " 192.168.3.11"), ("ip", "192.168.3.11/24"),
    ("ip", "127.0.0.1"), ("ip", "0.0.0.0"), ("ip", "224.0.0.1"), ("ip", "169.254.0.5"), ("ip", "240.0.0.1"),
    ("ip", "192.168.3.0"), ("ip", "192.168.3.255"), ("ip", "\u0661\u0669\u0662.168.3.11"), ("ip", 3232236299),
    ("ip", ipaddress.IPv6Address("::1")), ("ip", "192.168.3.11;reboot"),
    ("prefix", 15), ("prefix", 30), ("prefix", True), ("prefix", "24"), ("prefix", 24.0),
    ("gateway", "192.168.4.1"), ("gateway", "192.168.3.11"), ("gateway", "192.168.3.0"), ("gateway", "192.168.3.255"),
    ("eni_id", "eni-short"), ("eni_id", "ENI-ABCDEFGH1"), ("eni_id", "eni-abcdefgh1; rm -rf /"),
    ("eni_id", "eni-abcdefgh\n"), ("eni_id", "eni-" + "a" * 33), ("eni_id", "i-bp1abcdefgh"), ("eni_id", 5),
    ("table", 254), ("table", 20000), ("table", 21000), ("table", 30200), ("table", "20001"),
    ("priority", 32766), ("priority", 10000), ("priority", 9000), ("priority", 0), ("priority", False),
    ("wait_s", -1), ("wait_s", 601), ("wait_s", 1.5),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[f"{f}={v!r}"[:40] for f, v in BAD_VALUES])
def test_invalid_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(GuestValueError) as err:
        routing(**{field: value})
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", ["name", "description", "tags", "instance_name", "hostname"])
def test_free_form_fields_do_not_exist(name: str) -> None:
    with pytest.raises(TypeError):
        GuestRouting(**GOOD, **{name: "web-01"})  # type: ignore[arg-type]


def test_construction_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        GuestRouting("00:16:3e:00:00:11", "192.168.3.11", 24, "192.168.3.253")  # type: ignore[misc]
    r = routing()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.mac = "$(reboot)"  # type: ignore[misc]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(field=st.sampled_from(["mac", "ip", "gateway", "eni_id"]),
       junk=st.one_of(st.text(), st.sampled_from(HOSTILE)),
       base=st.sampled_from(["", "00:16:3e:00:00:11", "192.168.3.11", "eni-bp1abcdefgh"]),
       where=st.sampled_from(["prefix", "suffix", "replace"]))
def test_hostile_text_is_refused_or_normalised_to_a_safe_token(field: str, junk: str, base: str, where: str) -> None:
    value = {"prefix": junk + base, "suffix": base + junk, "replace": junk}[where]
    try:
        r = routing(**{field: value})
    except GuestValueError as err:
        assert err.field in (field, "gateway", "ip")
        return
    token = {"mac": r.mac, "ip": str(r.ip), "gateway": str(r.gateway), "eni_id": r.eni_id}[field]
    assert re.fullmatch(r"[0-9a-z:.\-]+", token or "")
    script = render(r, "apply")
    for bad in HOSTILE:
        if bad.strip() and bad not in ("*", "\\"):
            assert bad not in "\n".join(value_block(script))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_never_reach_the_script(hostile: str) -> None:
    for field in ("mac", "ip", "gateway", "eni_id"):
        with pytest.raises(GuestValueError):
            routing(**{field: hostile})
        with pytest.raises(GuestValueError):
            routing(**{field: GOOD.get(field, "eni-bp1abcdefgh") + hostile})
    with pytest.raises(GuestValueError):
        render(routing(), hostile)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        render(hostile)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        render_batch([routing(), hostile])  # type: ignore[list-item]


def test_render_accepts_only_guestrouting_and_known_modes() -> None:
    with pytest.raises(TypeError):
        render(dict(GOOD))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        render_batch("00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253")  # type: ignore[arg-type]
    with pytest.raises(GuestValueError) as err:
        render(routing(), "reapply")  # type: ignore[arg-type]
    assert err.value.field == "mode"
    with pytest.raises(GuestValueError) as err:
        render(routing(), "apply", encoding="zip")  # type: ignore[arg-type]
    assert err.value.field == "encoding"
    with pytest.raises(GuestValueError):
        render_batch([])
    with pytest.raises(GuestValueError, match="appears twice"):
        render_batch([routing(), routing(ip="192.168.3.12", mac="00-16-3E-00-00-11")])
    many = [routing(mac=f"00:16:3e:00:{i // 256:02x}:{i % 256:02x}", ip="192.168.3.11")
            for i in range(gs.MAX_BATCH_ROWS + 1)]
    with pytest.raises(GuestValueError, match="at most"):
        render_batch(many)


# ------------------------------------------------------------------------------ rendering


@pytest.mark.parametrize("mode", ["apply", "check", "remove"])
def test_value_block_holds_only_validated_assignments(mode: str) -> None:
    rows = [routing(eni_id="eni-bp1abcdefgh"), routing(mac="00:16:3e:00:00:21", ip="192.168.3.21", table=20002,
                                                        priority=9002, wait_s=0)]
    script = render_batch(rows, mode)  # type: ignore[arg-type]
    assert script.startswith("#!/bin/sh\n")
    assert value_block(script) == [
        f"EGRESSCTL_MODE={mode}",
        "EGRESSCTL_ROWS='",
        "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253 eni-bp1abcdefgh 20001 9001 30",
        "00:16:3e:00:00:21 192.168.3.21 24 192.168.3.253 - 20002 9002 0",
        "'",
    ]
    assert script.endswith('exec /bin/sh -c "$EGRESSCTL_LIB" egress-routing.sh "$EGRESSCTL_MODE"\n')


def test_rendering_is_deterministic_and_encodings_embed_the_same_logic() -> None:
    r = routing()
    assert render(r) == render(r)
    assert render(r, encoding="gzip") == render(r, encoding="gzip")
    lib = embedded_script()
    assert extract_plain_lib(render(r)) == lib
    assert extract_gzip_lib(render(r, "check", encoding="gzip")) == lib
    swapped = render(r, "remove").replace("EGRESSCTL_MODE=remove", "EGRESSCTL_MODE=apply")
    assert swapped.replace('"mode":"remove"', '"mode":"apply"') == render(r, "apply")


def test_embedded_logic_is_the_template_without_comments() -> None:
    template, lib = template_text(), embedded_script()
    assert lib.startswith("#!/bin/sh\n") and lib.endswith('ec_main "$@"\n')
    code = [ln.strip() for ln in template.splitlines()[1:]
            if ln.strip() and (not ln.strip().startswith("#") or ln.strip().startswith("# shellcheck "))]
    assert lib.splitlines()[3:] == code
    assert "EGRESSCTL_LIB_END" not in template
    # the template itself is what the package ships
    assert template == (Path(gs.__file__).parent / "routing.sh").read_text()


def test_script_sizes_fit_cloud_assistant() -> None:
    single = render(routing(eni_id="eni-bp1abcdefghijklmnop"), "apply", encoding="gzip")
    assert len(single) <= COMMAND_CONTENT_LIMIT_KEPT
    rows = [routing(mac=f"00:16:3e:01:00:{i:02x}", ip=f"192.168.3.{i + 1}", eni_id="eni-bp1abcdefghijklmnop")
            for i in range(100)]
    groups = split_batch(rows, "apply")
    assert [r for g in groups for r in g] == rows
    assert len(groups) <= 3
    for group in groups:
        assert len(render_batch(group, "apply", encoding="gzip")) <= COMMAND_CONTENT_LIMIT
    with pytest.raises(GuestValueError, match="single row"):
        split_batch(rows[:1], limit=1000)


# ------------------------------------------------------------------------------ shell checks


def _shellcheck(path: Path) -> None:
    done = subprocess.run([SHELLCHECK or "shellcheck", "-s", "sh", "-S", "style", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_shellcheck
def test_shellcheck_template_and_embedded_logic(tmp_path: Path) -> None:
    _shellcheck(Path(gs.__file__).parent / "routing.sh")
    (tmp_path / "lib.sh").write_text(embedded_script())
    _shellcheck(tmp_path / "lib.sh")


@needs_shellcheck
@pytest.mark.parametrize("encoding", ["plain", "gzip"])
@pytest.mark.parametrize("mode", ["apply", "check", "remove"])
@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_shellcheck_rendered_scripts(tmp_path: Path, mode: str, encoding: str, batch: bool) -> None:
    rows = [routing(eni_id="eni-bp1abcdefgh")]
    if batch:
        rows += [routing(mac=f"00:16:3e:00:01:{i:02x}", ip=f"192.168.3.{20 + i}", wait_s=5) for i in range(30)]
    path = tmp_path / "script.sh"
    path.write_text(render_batch(rows, mode, encoding=encoding))  # type: ignore[arg-type]
    _shellcheck(path)
    dash = shutil.which("dash") or "/bin/sh"
    assert subprocess.run([dash, "-n", str(path)], capture_output=True).returncode == 0


def _fixed_texts(tmp_path: Path) -> dict[str, str]:
    """The unit and hook texts, as the script writes them (evaluated by sh, main not run)."""
    lib = tmp_path / "lib.sh"
    lib.write_text(template_text().replace('\nec_main "$@"\n', "\n"))
    out = {}
    for var in ("EC_UNIT_TEXT", "EC_NM_TEXT", "EC_ND_TEXT"):
        done = subprocess.run(["/bin/sh", "-c", f'. "$1"; printf "%s\\n" "${var}"', "sh", str(lib)],
                              capture_output=True, text=True, check=True)
        out[var] = done.stdout
    return out


def test_unit_and_hooks_text(tmp_path: Path) -> None:
    texts = _fixed_texts(tmp_path)
    unit = texts["EC_UNIT_TEXT"].splitlines()
    for line in ("After=network-online.target", "Wants=network-online.target", "Type=oneshot",
                 f"ExecStart=/bin/sh {gs.INSTALLED_SCRIPT} reapply", "WantedBy=multi-user.target"):
        assert line in unit
    assert texts["EC_NM_TEXT"].startswith("#!/bin/sh\n") and "dhcp4-change" in texts["EC_NM_TEXT"]
    assert texts["EC_ND_TEXT"].startswith("#!/bin/sh\n") and "reapply --no-wait" in texts["EC_ND_TEXT"]
    if SHELLCHECK:
        for var in ("EC_NM_TEXT", "EC_ND_TEXT"):
            hook = tmp_path / f"{var}.sh"
            hook.write_text(texts[var])
            _shellcheck(hook)


# ------------------------------------------------------------------------------ the shell's own checks
# Read-only: "check" never writes, and rows that do not validate stop the script before it does
# anything, so these run on the host without a namespace.


def _run_lib(rows: str, mode: str = "check") -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EGRESSCTL_ROWS": rows}
    return subprocess.run(["/bin/sh", "-c", embedded_script(), "egress-routing.sh", mode], capture_output=True,
                          text=True, env=env, timeout=30)


@pytest.mark.parametrize("row", [
    "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253 $(touch${IFS}/tmp/egt-pwned) 20001 9001 30",
    "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253 eni-bp1abcdefgh 254 9001 30",
    "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253 eni-bp1abcdefgh 20001 32766 30",
    "00:16:3E:00:00:11 192.168.3.11 24 192.168.3.253 - 20001 9001 30",
    "00:16:3e:00:00:11 192.168.3.011 24 192.168.3.253 - 20001 9001 30",
    "00:16:3e:00:00:11 192.168.3.11 24 10.0.0.1 - 20001 9001 30",
    "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253 - 20001 9001 30 extra",
    "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253 - 020001 9001 30",
    "00:16:3e:00:00:11 192.168.3.11 24 192.168.3.253 - 20001 9001 `id`",
])
def test_shell_refuses_tampered_rows(row: str) -> None:
    marker = Path("/tmp/egt-pwned")
    done = _run_lib("\n" + row + "\n")
    assert done.returncode == 1
    result = parse_result(done.stdout)
    assert result.status == "error" and result.items == ()
    assert any("invalid script values" in e for e in result.errors), result.errors
    assert not marker.exists()
    assert done.stdout.splitlines()[-1].startswith("EGRESSCTL_RESULT ")


def test_guest_without_any_of_the_macs_says_so() -> None:
    rows = [routing(mac="02:ec:00:00:00:01", wait_s=0), routing(mac="02:ec:00:00:00:02", wait_s=0)]
    done = _run_lib("\n".join(r.row() for r in rows))
    assert done.returncode == 1
    result = parse_result(done.stdout)
    assert result.status == "error"
    assert any("none of the 2 MAC(s) in this script is present on this instance" in e for e in result.errors)


def test_unknown_mode_is_an_error_with_a_result_line() -> None:
    done = _run_lib("", mode="$(reboot)")
    assert done.returncode == 1
    assert parse_result(done.stdout).status == "error"


# ------------------------------------------------------------------------------ parse_result


def _result_line(**overrides: object) -> str:
    item = {"status": "changed", "eni": "eni-bp1abcdefgh", "mac": "00:16:3e:00:00:11", "ip": "192.168.3.11",
            "prefix": 24, "gateway": "192.168.3.253", "table": 20001, "priority": 9001, "dev": "eth1",
            "rp_filter": 1, "changes": ["rule 9001: from 192.168.3.11 lookup 20001"], "differences": [], "errors": []}
    body = {"version": 1, "mode": "apply", "status": "changed", **{k: v for k, v in item.items() if k not in
            ("status", "changes", "differences", "errors")}, "changes": item["changes"], "differences": [],
            "errors": [], "items": [item]}
    body.update(overrides)
    return "EGRESSCTL_RESULT " + json.dumps(body)


def test_parse_result_reads_the_last_result_line() -> None:
    out = "egressctl: changed: x\n" + _result_line(status="drift", mode="check") + "\n" + _result_line() + "\n"
    result = parse_result(out + "some stderr noise appended by a runner\n")
    assert result.mode == "apply" and result.status == "changed" and result.ok
    assert (result.eni, result.ip, result.table, result.priority, result.dev) == (
        "eni-bp1abcdefgh", "192.168.3.11", 20001, 9001, "eth1")
    assert result.changes == ("rule 9001: from 192.168.3.11 lookup 20001",)
    assert len(result.items) == 1 and result.items[0].rp_filter == 1 and result.items[0].prefix == 24


@pytest.mark.parametrize("out", [
    "", "egressctl: nothing\n", "EGRESSCTL_RESULT {not json\n", "EGRESSCTL_RESULT []\n",
    _result_line(status="fine"), _result_line(changes="x"), _result_line(items=[{"status": "ok"}]),
    _result_line(table="20001"), _result_line(mode=None),
])
def test_parse_result_rejects_garbage(out: str) -> None:
    with pytest.raises(GuestResultError):
        parse_result(out)


def test_parse_result_of_drift_is_not_ok() -> None:
    result = parse_result(_result_line(status="drift", mode="check", differences=["rule missing"]))
    assert not result.ok and result.differences == ("rule missing",)
