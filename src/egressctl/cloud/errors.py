"""Errors from the cloud, classified by what the caller should do about them.

    CloudError                  any failed call (code, message, HTTP status, request id, action)
     ├── Throttled              rate limited: wait (the server may say how long) and retry
     ├── Transient              5xx and the cloud's own hiccups: the request was not applied; retry it
     │    └── Ambiguous         transport failure: the request may or may not have been applied
     ├── Busy                   the resource is in a transitional state or another request holds it:
     │                          look again, then decide (the step's job, not a blind retry)
     ├── NotFound               the resource does not exist (often an answer, not a failure)
     ├── AuthError              credentials or permission: never retried (no retry storm)
     └── Refused                the request is wrong for the resource's state: fail that instance

Classification is a data table (below), not scattered ifs; ``classify`` is the only place that
decides.
"""

from __future__ import annotations

import re
from typing import Any

THROTTLING = re.compile(r"(^|\.)Throttling($|\.)|^Rejected\.Throttling$|^Throttling\.User$|^Throttling\.Api$")

# The cloud's own hiccups: the request was not applied, sending it again is right.
TRANSIENT_CODES = frozenset({
    "ServiceUnavailable", "InternalError", "InternalError.Dispatch", "UnknownError", "SystemBusy",
})

# "Busy now, fine later": a transitional state or a competing request (research/aliyun-api.md §3–4 and
# the codes Terraform retries, anchors §2.5).  Whether to send the request again depends on what the
# resource looks like now, so these go back to the step, which looks before it acts again.
BUSY_CODES = frozenset({
    "OperationConflict", "TaskConflict", "LastTokenProcessing", "OperationFailed.LastTokenProcessing",
    "IncorrectEipStatus", "IncorrectStatus", "IncorrectStatus.NatGateway", "IncorrectStatus.NATGW",
    "InvalidBindingStatus", "InvalidOperation.Conflict", "IncorrectVSwitchStatus",
    "InvalidStatus.EniStatusNotSupport", "InvalidStatus.EcsStatusNotSupport", "OperationFailed.EcsMigrating",
    "InvalidOperation.InvalidEniState", "InvalidOperation.InvalidEcsState", "IncorretSnatEntryStatus",
    "IncorrectRouteEntryStatus", "InvalidInstanceId.PlanedChange", "IncorrectInstanceStatus",
})

AUTH_CODES = frozenset({
    "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "IncompleteSignature", "InvalidSecurityToken.Expired", "InvalidSecurityToken.Malformed",
    "InvalidSecurityToken.MismatchWithAccessKey", "InvalidTimeStamp.Expired", "InvalidTimeStamp.Format",
    "SignatureNonceUsed", "Forbidden.RAM", "Forbidden.SubUser", "Forbidden.NotSupportRAM", "NoPermission",
    "Forbidden.AccessKeyDisabled", "InvalidCredentials", "Unauthorized",
})


class CloudError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None, request_id: str = "",
                 action: str = "", retry_after_s: float | None = None):
        super().__init__(f"{action}: {code}: {message}" if action else f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.action = action
        self.retry_after_s = retry_after_s

    def short(self) -> str:
        return f"{self.code}: {self.message}"


class Throttled(CloudError):
    pass


class Transient(CloudError):
    pass


class Ambiguous(Transient):
    pass


class Busy(CloudError):
    pass


class NotFound(CloudError):
    pass


class AuthError(CloudError):
    pass


class Refused(CloudError):
    pass


def kind_of(code: str, status: int | None) -> type[CloudError]:
    if THROTTLING.search(code):
        return Throttled
    if code in AUTH_CODES or code.startswith("Forbidden.RAM"):
        return AuthError
    if code in BUSY_CODES:
        return Busy
    if code in TRANSIENT_CODES or (status is not None and status >= 500):
        return Transient
    if code.endswith(".NotFound") or code == "InvalidInstanId.NotFound":
        return NotFound
    return Refused


def _clean_message(raw: str) -> str:
    # the SDK prefixes "code: 400, <Message> request id: <id>"
    m = re.match(r"^code: \d+, (?P<msg>.*?)(?: request id: [\w-]+)?$", raw or "", re.S)
    return (m.group("msg") if m else raw or "").strip()


def from_sdk(exc: BaseException, action: str) -> CloudError:
    """Turn any exception the SDK raised into the classified CloudError (the secret never is in it)."""
    code = getattr(exc, "code", None)
    if code:
        status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
        retry_ms = getattr(exc, "retry_after", None)
        msg = _clean_message(str(getattr(exc, "message", "") or ""))
        cls = kind_of(str(code), int(status) if status else None)
        return cls(str(code), msg, int(status) if status else None, str(getattr(exc, "request_id", "") or ""),
                   action, retry_after_s=(retry_ms / 1000.0) if isinstance(retry_ms, (int, float)) and retry_ms
                   else None)
    inner: Any = getattr(exc, "inner_exception", None) or exc
    text = f"{type(inner).__name__}: {inner}"
    if type(inner).__name__ == "CredentialException" or type(exc).__name__ == "CredentialException" or \
            "credential" in text.lower():
        return AuthError("NoCredentials", _credential_hint(text), None, "", action)
    # transport: refused connection, timeouts, bad JSON from a proxy: the request may have been applied
    return Ambiguous("TransportError", text[:300], None, "", action)


def _credential_hint(text: str) -> str:
    detail = text.split(":", 1)[1].strip()[:200] if ":" in text else ""
    return ("no usable credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, or use "
            "--profile with ~/.aliyun/config.json, or run on ECS with a RAM role" + (f" ({detail})" if detail else ""))
