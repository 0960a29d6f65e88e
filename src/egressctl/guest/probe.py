"""The egress probe: ask an echo service, from inside the guest, which address it sees us from.

The URL is validated before it reaches the script (scheme, host, port, path from safe characters
only) and quoted; the answer is parsed here, not on the guest.  The seed's service,
``https://myip.ipip.net``, answers text like ``当前 IP：198.51.100.7  来自于：...``; any answer whose
first IPv4 address is the caller's works.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

DEFAULT_ECHO_URL = "https://myip.ipip.net"
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$")
_PATH = re.compile(r"^[A-Za-z0-9/._~-]*$")
_IPV4 = re.compile(r"(?<![\d.])((?:\d{1,3}\.){3}\d{1,3})(?![\d.])")
MARK = "EGRESSCTL_PROBE"


def validate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"echo URL {url!r}: only http and https")
    host = parts.hostname or ""
    if not _HOST.match(host) or parts.username or parts.password:
        raise ValueError(f"echo URL {url!r}: the host must be a plain name or IPv4 address")
    if not _PATH.match(parts.path) or parts.query or parts.fragment:
        raise ValueError(f"echo URL {url!r}: the path may only use letters, digits and / . _ ~ -")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def render_probe(url: str, timeout_s: int = 10) -> str:
    url = validate_url(url)
    t = int(timeout_s)
    return "\n".join([
        "#!/bin/sh",
        "# egressctl egress probe: which source address does the internet see?",
        f"url='{url}'",
        f"echo '{MARK} begin'",
        f'if command -v curl >/dev/null 2>&1; then curl -fsS --max-time {t} "$url"; rc=$?',
        f'elif command -v wget >/dev/null 2>&1; then wget -qO- -T {t} "$url"; rc=$?',
        "else echo 'neither curl nor wget is installed' >&2; rc=127; fi",
        "echo",
        f'echo "{MARK} end rc=$rc"',
        'exit "$rc"',
        "",
    ])


def parse_probe(output: str) -> str | None:
    """The first IPv4 address in the echo service's answer, if any."""
    text = output
    if f"{MARK} begin" in output:
        text = output.split(f"{MARK} begin", 1)[1].split(f"{MARK} end", 1)[0]
    for m in _IPV4.finditer(text):
        try:
            return str(ipaddress.IPv4Address(m.group(1)))
        except ValueError:
            continue
    return None
