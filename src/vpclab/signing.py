"""Request authentication: ACS3-HMAC-SHA256 (the SDK default) and the legacy RPC HMAC-SHA1 ("v2").

The verifier rebuilds what the client signed from the decoded request (never the raw query text:
the sync and async SDK paths percent-encode differently, research/sdk-wire.md §4.2) and compares in
constant time.  Failures are the gateway's own error codes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from urllib.parse import quote

from . import errors

MAX_SKEW_S = 900  # ±15 min, like the gateway
_AUTH_RE = re.compile(
    r"^(?P<alg>ACS3-[A-Z0-9-]+)\s+Credential=(?P<cred>[^,]+),\s*"
    r"SignedHeaders=(?P<sh>[^,]*),\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)
_MUST_SIGN = ("host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
              "x-acs-content-sha256")


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _pct(s: str) -> str:
    # most keys and values (ids, numbers) need no escaping: skip quote() for them, it is the hot spot
    return s if _UNRESERVED.fullmatch(s) else quote(s, safe="~", encoding="utf-8")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted((_pct(k), _pct(v)) for k, v in pairs))


class NonceCache:
    """Refuses a nonce seen within the skew window (the SDK uses a fresh nonce on every try)."""

    def __init__(self, ttl_s: float = MAX_SKEW_S, max_items: int = 200_000):
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._ttl = ttl_s
        self._max = max_items
        self._lock = threading.Lock()

    def check_and_add(self, nonce: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen:
                _, t = next(iter(self._seen.items()))
                if now - t < self._ttl and len(self._seen) < self._max:
                    break
                self._seen.popitem(last=False)
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


def _parse_acs_date(value: str) -> datetime:
    try:
        if len(value) != 20 or not value.endswith("Z"):
            raise ValueError(value)
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=timezone.utc)
    except ValueError as e:
        raise errors.ApiError("InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.",
                              400) from e


def _check_skew(ts: datetime, now: datetime | None) -> None:
    now = now or datetime.now(timezone.utc)
    if abs((now - ts).total_seconds()) > MAX_SKEW_S:
        raise errors.timestamp_expired()


def _joined(values: list[str] | None) -> str:
    if not values:
        return ""
    return values[0] if len(values) == 1 else ",".join(sorted(values))


def verify_acs3(method: str, path: str, query_pairs: list[tuple[str, str]], headers: list[tuple[str, str]],
                body: bytes, lookup_secret: Callable[[str], str | None], nonces: NonceCache | None = None,
                now: datetime | None = None) -> str:
    """Verify an ACS3-HMAC-SHA256 request; return the access key id or raise ApiError."""
    lower: dict[str, list[str]] = {}
    for k, v in headers:
        kl = k.lower()
        if kl in lower:
            lower[kl].append(v.strip())
        else:
            lower[kl] = [v.strip()]
    auth = (lower.get("authorization") or [""])[0]
    m = _AUTH_RE.match(auth)
    if not m:
        raise errors.incomplete_signature("The Authorization header is malformed.")
    if m.group("alg") != "ACS3-HMAC-SHA256":
        raise errors.ApiError("InvalidSignatureMethod", f"Specified signature method {m.group('alg')} is not "
                              "supported.", 400)
    akid, sig = m.group("cred"), m.group("sig").lower()
    signed = [h.strip().lower() for h in m.group("sh").split(";") if h.strip()]
    for must in _MUST_SIGN:
        if must not in signed:
            raise errors.incomplete_signature(f"The header {must} must be signed.")
    if body and "content-type" not in signed:
        raise errors.incomplete_signature("The header content-type must be signed.")
    secret = lookup_secret(akid)
    if secret is None:
        raise errors.access_key_not_found()
    body_hash = hashlib.sha256(body or b"").hexdigest()
    if (lower.get("x-acs-content-sha256") or [""])[0].lower() != body_hash:
        raise errors.ApiError("ContentSHA256NotMatch", "The x-acs-content-sha256 header does not match the body.",
                              400)
    _check_skew(_parse_acs_date(lower["x-acs-date"][0]), now)
    canon_headers = "".join(f"{h}:{_joined(lower.get(h))}\n" for h in signed)
    canonical = "\n".join([method.upper(), path or "/", canonical_query(query_pairs), canon_headers,
                           ";".join(signed), body_hash])
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    expect = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expect, sig):
        raise errors.signature_mismatch()
    if nonces is not None and not nonces.check_and_add(lower["x-acs-signature-nonce"][0]):
        raise errors.nonce_used()
    return akid


def verify_v2(method: str, params: list[tuple[str, str]], lookup_secret: Callable[[str], str | None],
              nonces: NonceCache | None = None, now: datetime | None = None) -> str:
    """Verify a legacy RPC request signed with HMAC-SHA1 (all parameters, Signature excluded)."""
    p = dict(params)
    for need in ("AccessKeyId", "Signature", "Timestamp", "SignatureNonce"):
        if not p.get(need):
            raise errors.missing(need)
    if p.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
        raise errors.ApiError("InvalidSignatureMethod", "Specified signature method is not supported.", 400)
    secret = lookup_secret(p["AccessKeyId"])
    if secret is None:
        raise errors.access_key_not_found()
    ts_raw = p["Timestamp"]
    try:
        fmt = "%Y-%m-%dT%H:%M:%SZ" if len(ts_raw) > 17 else "%Y-%m-%dT%H:%MZ"
        ts = datetime.strptime(ts_raw, fmt).replace(tzinfo=timezone.utc)
    except ValueError as e:
        raise errors.ApiError("InvalidTimeStamp.Format", "Specified time stamp or date value is not well "
                              "formatted.", 400) from e
    _check_skew(ts, now)
    canon = canonical_query((k, v) for k, v in params if k != "Signature")
    string_to_sign = f"{method.upper()}&{_pct('/')}&{_pct(canon)}"
    digest = hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()
    if not hmac.compare_digest(base64.b64encode(digest).decode(), p["Signature"]):
        raise errors.signature_mismatch()
    if nonces is not None and not nonces.check_and_add(p["SignatureNonce"]):
        raise errors.nonce_used()
    return p["AccessKeyId"]
