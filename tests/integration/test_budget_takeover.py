"""A worker that stopped between reserving and settling a call (killed, or frozen while its lease moved
on) may have been billed for it: the ledger never reads less than the vendor's bill.

- Another job lease reserving the same call charges the stopped holder's reservation `unknown` at its
  estimate and reserves anew; the stopped holder, should it wake, settles its own row to its bill.
- A delivery that resumes the same vendor job takes the reservation over instead (no second bill).
- What a stopped holder reserved under a key no later delivery uses is charged `unknown` by the sweep
  once its job is final."""

from __future__ import annotations

from collections.abc import Iterator
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
from ingest.store import documents, jobs
from ingest.store.users import ensure_user

ESTIMATE = Charge(Decimal("0.0004"), {"tokens": 20_000})
BILL = Charge(Decimal("0.00038"), {"tokens": 19_000})


@pytest.fixture
def meter(database_url: str) -> Iterator[Meter]:
    pool = open_pool(database_url, max_size=4)
    yield Meter(Settings(_env_file=None, database_url=database_url, reservation_ttl_s=300), pool)
    pool.close()


def rows(meter: Meter) -> list[tuple[str, str, Decimal, str | None]]:
    with meter.pool.connection() as conn:
        return conn.execute("SELECT key, state, amount_usd, holder FROM cost_entries ORDER BY id").fetchall()


def reserve(meter: Meter, holder: str, *, key: str = "d1:embed:0-3", resumes: bool = False, **kw: object):  # type: ignore[no-untyped-def]
    return meter.reserve(
        key=key, service="openai", stage="embed", estimate=ESTIMATE, holder=holder, resumes=resumes, **kw
    )


def test_a_takeover_charges_the_stopped_holders_call_and_reserves_anew(meter: Meter) -> None:
    stopped = reserve(meter, "host:1:a")
    taking_over = reserve(meter, "host:2:b")
    assert taking_over.id != stopped.id
    first_key = f"d1:embed:0-3:unknown:{stopped.id}"
    assert rows(meter) == [
        (first_key, "unknown", ESTIMATE.usd, "host:1:a"),
        ("d1:embed:0-3", "reserved", ESTIMATE.usd, "host:2:b"),
    ]
    meter.settle(taking_over, BILL)
    # The frozen holder wakes with its answer: its own row becomes its bill.
    meter.settle(stopped, BILL)
    assert rows(meter) == [
        (first_key, "charged", BILL.usd, "host:1:a"),
        ("d1:embed:0-3", "charged", BILL.usd, "host:2:b"),
    ]
    assert meter.report().services["openai"].spent == BILL.usd * 2


def test_a_stopped_holder_that_wakes_to_a_call_never_billed_gives_its_charge_back(meter: Meter) -> None:
    stopped = reserve(meter, "host:1:a")
    taking_over = reserve(meter, "host:2:b")
    meter.release(stopped)  # its call failed before the vendor could bill it
    meter.settle(taking_over, BILL)
    assert [(state, amount) for _, state, amount, _ in rows(meter)] == [
        ("released", 0),
        ("charged", BILL.usd),
    ]


def test_a_delivery_that_resumes_the_vendor_job_takes_the_reservation_over(meter: Meter) -> None:
    stopped = reserve(meter, "host:1:a", key="d2:parse")
    resumed = reserve(meter, "host:2:b", key="d2:parse", resumes=True)
    assert resumed.id == stopped.id
    meter.settle(resumed, BILL)
    assert rows(meter) == [("d2:parse", "charged", BILL.usd, "host:2:b")]


def test_the_same_holder_again_keeps_its_reservation(meter: Meter) -> None:
    first = reserve(meter, "host:1:a")
    assert reserve(meter, "host:1:a").id == first.id
    assert [state for _, state, _, _ in rows(meter)] == ["reserved"]


def test_the_stopped_holders_charge_counts_against_the_budget(meter: Meter) -> None:
    with meter.pool.connection() as conn:
        ledger.set_limit(conn, "openai", ESTIMATE.usd + ESTIMATE.usd / 2)
    reserve(meter, "host:1:a")
    now = datetime.now(UTC)
    late = Meter(meter.settings, meter.pool, clock=lambda: now + timedelta(seconds=600))
    # Expired, it no longer holds budget; but its call may have been billed: charged, it leaves no room.
    with pytest.raises(BudgetExhausted):
        reserve(late, "host:2:b")
    assert [state for _, state, _, _ in rows(meter)] == ["unknown"]


def _job(conn: psycopg.Connection, name: str) -> tuple[object, object]:
    user = ensure_user(conn, "ada")
    doc, _ = documents.insert(
        conn, owner_id=user.id, sha256=name * 64, filename=f"{name}.txt", media_type="text/plain", size=1
    )
    job = jobs.create(conn, doc.id)
    return doc.id, job.id


def test_the_sweep_charges_what_stopped_holders_left_once_their_jobs_are_final(meter: Meter) -> None:
    with meter.pool.connection() as conn:
        done_doc, done_job = _job(conn, "a")
        live_doc, live_job = _job(conn, "b")
        conn.execute("UPDATE jobs SET status = 'completed' WHERE id = %s", (done_job,))
    orphan = reserve(meter, "host:1:a", key="a:embed:0-9", document_id=done_doc, job_id=done_job)
    reserve(meter, "host:1:a", key="b:embed:0-9", document_id=live_doc, job_id=live_job)
    meter.reserve(  # a mock call's shadow cost is no bill
        key="a:embed:0-9", service="openai", stage="embed", estimate=ESTIMATE, simulated=True, job_id=done_job
    )
    assert meter.charge_abandoned() == 0  # not expired yet: its holder may still settle it
    now = datetime.now(UTC)
    late = Meter(meter.settings, meter.pool, clock=lambda: now + timedelta(seconds=600))
    assert late.charge_abandoned() == 1
    assert late.charge_abandoned() == 0  # once
    by_key = {key: (state, amount) for key, state, amount, _ in rows(meter)}
    assert by_key[f"a:embed:0-9:unknown:{orphan.id}"] == ("unknown", ESTIMATE.usd)
    assert by_key["b:embed:0-9"] == ("reserved", ESTIMATE.usd)  # its job still runs: a delivery may settle it
