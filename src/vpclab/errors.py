"""Errors the emulator answers with: the cloud's own codes, messages and HTTP statuses.

Every refusal is an ``ApiError``; the server renders it as ``{RequestId, HostId, Code, Message}``
with the status.  Factories below carry the texts from research/aliyun-api.md so handlers never
spell a code twice.
"""

from __future__ import annotations


class ApiError(Exception):
    """One error answer of the OpenAPI gateway or a service."""

    def __init__(self, code: str, message: str, status: int = 400, *, retry_after_ms: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.retry_after_ms = retry_after_ms


# --- gateway (signature, routing) ---------------------------------------------------------

def signature_mismatch() -> ApiError:
    return ApiError("SignatureDoesNotMatch", "Specified signature is not matched with our calculation.", 400)


def access_key_not_found() -> ApiError:
    return ApiError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)


def timestamp_expired() -> ApiError:
    return ApiError("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400)


def incomplete_signature(detail: str) -> ApiError:
    return ApiError("IncompleteSignature", f"The request signature does not conform to Aliyun standards. {detail}",
                    400)


def nonce_used() -> ApiError:
    return ApiError("SignatureNonceUsed", "Specified signature nonce was used already.", 400)


def unknown_action(action: str) -> ApiError:
    return ApiError("InvalidAction.NotFound",
                    f"Specified api is not found, please check your url and method. ({action})", 404)


def unknown_version(version: str) -> ApiError:
    return ApiError("InvalidVersion", f"Specified parameter Version is not valid. ({version})", 400)


def throttled(retry_after_ms: int) -> ApiError:
    return ApiError("Throttling.User", "Request was denied due to user flow control.", 400,
                    retry_after_ms=retry_after_ms)


# --- parameters ----------------------------------------------------------------------------

def missing(name: str) -> ApiError:
    return ApiError("MissingParameter",
                    f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
                    400)


def invalid(name: str, why: str = "") -> ApiError:
    msg = f'The specified parameter "{name}" is not valid.'
    return ApiError("InvalidParameter", f"{msg} {why}".strip(), 400)


def idempotent_mismatch() -> ApiError:
    return ApiError("IdempotentParameterMismatch", "The request is retried with updated parameters.", 400)


def region_not_found(region: str) -> ApiError:
    return ApiError("InvalidRegionId.NotFound", f"The specified RegionId does not exist. ({region})", 404)


def internal() -> ApiError:
    return ApiError("InternalError",
                    "The request processing has failed due to some unknown error, exception or failure.", 500)


def service_unavailable() -> ApiError:
    return ApiError("ServiceUnavailable", "The request has failed due to a temporary failure of the server.", 503)


def operation_conflict() -> ApiError:
    return ApiError("OperationConflict", "Request was denied due to conflict with a previous request.", 409)


def dry_run_ok() -> ApiError:
    return ApiError("DryRunOperation", "Request validation has been passed with DryRun flag set.", 400)
