"""Guest-side configuration: the policy-routing script for a secondary ENI (docs/guest-routing.md)."""

from .script import (
    GuestItemResult,
    GuestResult,
    GuestResultError,
    GuestRouting,
    GuestValueError,
    parse_result,
    render,
    render_batch,
    scheme_numbers,
    split_batch,
)

__all__ = [
    "GuestItemResult",
    "GuestResult",
    "GuestResultError",
    "GuestRouting",
    "GuestValueError",
    "parse_result",
    "render",
    "render_batch",
    "scheme_numbers",
    "split_batch",
]
