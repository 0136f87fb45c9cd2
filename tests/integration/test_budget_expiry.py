"""A worker killed between reserve and settle: its reservation holds the budget until it expires, then the
budget comes back. The clock is injected: no test waits for the expiry."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from costs import ledger
from costs.budget import BudgetExhausted
from costs.charges import Charge
from costs.meter import Meter
from ingest.config import Settings
from ingest.db.pool import open_pool

LIMIT = Decimal("0.010")
TTL_S = 300


def _reserve_then_hang(conninfo: str, reserved) -> None:
    """A worker that reserved the whole budget and then hangs inside its vendor call."""
    settings = Settings(_env_file=None, database_url=conninfo, reservation_ttl_s=TTL_S)
    pool = open_pool(conninfo, max_size=1, name="doomed")
    held = Meter(settings, pool).reserve(
        key="doc-1:parse", service="llamaparse", stage="parse", estimate=Charge(LIMIT)
    )
    reserved.put(held.id)
    signal.pause()  # killed here, before settle or release


def test_a_killed_workers_reservation_expires_and_the_budget_comes_back(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        ledger.set_limit(conn, "llamaparse", LIMIT)
    ctx = multiprocessing.get_context("spawn")
    reserved = ctx.Queue()
    worker = ctx.Process(target=_reserve_then_hang, args=(database_url, reserved))
    worker.start()
    entry_id = reserved.get(timeout=120)
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(timeout=30)
    assert worker.exitcode == -signal.SIGKILL

    settings = Settings(_env_file=None, database_url=database_url, reservation_ttl_s=TTL_S)
    pool = open_pool(database_url, max_size=2)
    now = datetime.now(UTC)
    clock = [now]
    meter = Meter(settings, pool, clock=lambda: clock[0])
    try:
        # Before the expiry the dead worker's hold still counts: nothing else fits.
        assert not meter.budget_ok("llamaparse")
        with pytest.raises(BudgetExhausted):
            meter.reserve(
                key="doc-2:parse", service="llamaparse", stage="parse", estimate=Charge(Decimal("0.001"))
            )

        clock[0] = now + timedelta(seconds=TTL_S + 1)
        assert meter.budget_ok("llamaparse")
        assert meter.report().services["llamaparse"].reserved == 0
        held = meter.reserve(key="doc-2:parse", service="llamaparse", stage="parse", estimate=Charge(LIMIT))
        meter.settle(held, Charge(LIMIT))

        with pool.connection() as conn:
            dead = ledger.get(conn, entry_id)
            spent = ledger.charged(conn, meter.today())
        assert dead is not None and (dead.state, dead.amount_usd) == ("expired", 0)
        assert spent == {"llamaparse": LIMIT}
    finally:
        pool.close()


def test_a_redelivery_takes_over_an_expired_reservation_of_its_key(database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url, reservation_ttl_s=TTL_S)
    pool = open_pool(database_url, max_size=2)
    now = datetime.now(UTC)
    clock = [now]
    meter = Meter(settings, pool, clock=lambda: clock[0])
    try:
        with pool.connection() as conn:
            ledger.set_limit(conn, "openai", LIMIT)
        first = meter.reserve(key="doc:embed:0-3", service="openai", stage="embed", estimate=Charge(LIMIT))
        clock[0] = now + timedelta(seconds=TTL_S + 1)
        again = meter.reserve(key="doc:embed:0-3", service="openai", stage="embed", estimate=Charge(LIMIT))
        assert again.id == first.id and again.state == "reserved" and again.expires_at > clock[0]
        meter.settle(again, Charge(Decimal("0.004")))
        assert meter.report().services["openai"].spent == Decimal("0.004")
    finally:
        pool.close()
