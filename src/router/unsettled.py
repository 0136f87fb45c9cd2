"""Vendor calls that may have been billed although we could not use their answer.

A request that left this process may have been billed even when the call then failed: the connection
dropped while the answer was read, the answer could not be read or checked, or an error of ours struck
after the request was sent. Only a failure that certainly never reached the vendor (the connection was
never made) or an answer the vendor does not bill (an HTTP error status) is unbilled. The client notes on
its exception what may have been billed, and the pipeline charges it as `unknown` instead of releasing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.vendor_errors import status_of

# Class names (anywhere in the MRO of the error or of its causes) of failures before the request was sent.
_NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout", "ConnectionRefusedError"})
_NOTE = "_ingest_maybe_billed"


@dataclass(frozen=True, slots=True)
class MaybeBilled:
    """What a failed call may have cost: the tokens of its requests that may have been billed."""

    tokens: int
    requests: int
    reason: str


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def may_have_been_billed(exc: BaseException) -> bool:
    """Whether a request that failed with `exc` may have been billed (see the module's docstring)."""
    for err in _chain(exc):
        status = status_of(err)
        if status is not None:
            return 200 <= status < 300  # an answer we could not read was billed; an error status was not
        if any(cls.__name__ in _NOT_SENT for cls in type(err).__mro__):
            return False
    return True


def note(exc: BaseException, billed: MaybeBilled) -> None:
    setattr(exc, _NOTE, billed)


def noted(exc: BaseException) -> MaybeBilled | None:
    billed = getattr(exc, _NOTE, None)
    return billed if isinstance(billed, MaybeBilled) else None
