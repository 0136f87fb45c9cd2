"""Money: exact US dollars as `Decimal`, stored as PostgreSQL `numeric(20, 12)`.

Why not integer micro-dollars: text-embedding-3-small costs $0.02 per 1M tokens, i.e. 0.02 micro-dollars
per token, so rounding each call to the micro-dollar charges 0 (or 1) for a small batch and the ledger
drifts from the bill. Integer nano-dollars would fit today's prices but not every price a settings
override may state ($0.0125 per 1M tokens is 12.5 nano-dollars). A decimal with 12 places (pico-dollars)
holds every per-unit price whose per-1M (or per-1,000) figure has up to 6 (or 9) decimals exactly, and
PostgreSQL sums `numeric` exactly, so every total is the exact sum of its parts.

Rules that keep it exact:
- floats are refused at the edge (`usd(0.1)` raises): a float is already rounded;
- every computation runs in `EXACT`, a context that raises on any rounding instead of rounding;
- an amount with more than 12 decimals is refused before it can reach the database, which would round.
Reports print every amount with at least 6 decimals (micro-dollars) and more only where the exact
value has them, so a printed figure is always the stored one.
"""

from __future__ import annotations

from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext

SCALE = 12  # decimal places stored: pico-dollars
DISPLAY_PLACES = 6  # reports show at least micro-dollars
ZERO = Decimal(0)
# 40 significant digits cover numeric(20, 12) times any usage count; traps turn any rounding into an error.
EXACT = Context(prec=40, traps=[Inexact, InvalidOperation])


def usd(value: Decimal | int | str) -> Decimal:
    """An exact, non-negative dollar amount with at most 12 decimals; floats are refused."""
    if isinstance(value, (float, bool)):
        raise TypeError("money is never a float: pass a Decimal, an int or a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a dollar amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a dollar amount: {value!r}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -SCALE:
        raise ValueError(f"{value}: more than {SCALE} decimals (finer than a pico-dollar)")
    return amount


def mul(price: Decimal, quantity: int) -> Decimal:
    """price × quantity, exactly (raises rather than rounds)."""
    with localcontext(EXACT):
        return price * quantity


def div(amount: Decimal, divisor: int) -> Decimal:
    """amount ÷ divisor where the quotient is exact (e.g. a per-1M price to a per-token price)."""
    with localcontext(EXACT):
        return amount / divisor


def total(amounts: list[Decimal]) -> Decimal:
    with localcontext(EXACT):
        return sum(amounts, ZERO)


def fmt_usd(amount: Decimal) -> str:
    """The exact amount as a plain decimal string with at least 6 places: "0.000120", "0.00000002"."""
    places = max(DISPLAY_PLACES, -min(0, amount.normalize().as_tuple().exponent))  # type: ignore[operator]
    with localcontext(EXACT):
        return f"{amount.quantize(Decimal(1).scaleb(-places)):f}"
