"""What a failed vendor call leaves in the ledger: released, or charged as `unknown`.

A call that certainly cost nothing gives its reservation back. One the client says the vendor may have
billed (router.unsettled: an answer we could not read, a read timeout, an error of ours after the request
left) is charged as `unknown` at its estimate, or at what its attempts may have cost when that is more,
with the reason: the ledger never reads less than the vendor's bill.
"""

from __future__ import annotations

from costs.meter import Meter, Reservation
from router import unsettled


def after_failure(
    meter: Meter, held: Reservation, failed: BaseException, *, model: str | None = None
) -> None:
    """`model`: the embedding model the call asked for (default: the configured one)."""
    billed = unsettled.noted(failed)
    if billed is None or held.simulated:
        meter.release(held)
        return
    per_token = held.service == "openai"  # what its attempts may have cost is priced by tokens
    actual = meter.embed_charge(billed.tokens, requests=billed.requests, model=model) if per_token else None
    meter.charge_unknown(held, actual, reason=billed.reason)
