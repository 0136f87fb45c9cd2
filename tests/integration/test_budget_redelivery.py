"""The same message delivered again (or by two workers at once) reuses its reservation: one charge."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costs.charges import Charge
from costs.meter import Meter
from ingest.config import Settings
from ingest.db.pool import open_pool
from ingest.services.submit import Submitted
from ingest.store import vectors
from router.decide import Mode
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage


@pytest.fixture
def meter(database_url: str) -> Iterator[Meter]:
    pool = open_pool(database_url, max_size=8)
    yield Meter(Settings(_env_file=None, database_url=database_url), pool)
    pool.close()


def _rows(meter: Meter) -> list[tuple[str, bool, str, Decimal]]:
    with meter.pool.connection() as conn:
        return conn.execute(
            "SELECT key, simulated, state, amount_usd FROM cost_entries ORDER BY key"
        ).fetchall()


def test_same_key_twice_is_one_reservation_and_one_charge(meter: Meter) -> None:
    kw = {"key": "d1:embed:0-9", "service": "openai", "stage": "embed", "estimate": Charge(Decimal("0.0002"))}
    first = meter.reserve(**kw)
    second = meter.reserve(**kw)  # the redelivered message
    assert second.id == first.id
    meter.settle(second, Charge(Decimal("0.00019998")))
    meter.settle(first, Charge(Decimal("0.00019998")))  # the first delivery settles late: no second charge
    third = meter.reserve(**kw)  # delivered once more after the charge
    assert third.state == "charged"
    meter.settle(third, Charge(Decimal("0.00019998")))
    assert _rows(meter) == [("d1:embed:0-9", False, "charged", Decimal("0.00019998"))]
    assert meter.report().services["openai"].spent == Decimal("0.00019998")


def test_two_workers_with_the_same_message_at_once_charge_once(meter: Meter) -> None:
    start = threading.Barrier(8)

    def deliver() -> None:
        start.wait()
        held = meter.reserve(
            key="d2:parse", service="llamaparse", stage="parse", estimate=Charge(Decimal("0.00375"))
        )
        meter.settle(held, Charge(Decimal("0.00375")))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _rows(meter) == [("d2:parse", False, "charged", Decimal("0.00375"))]


def test_a_failed_call_is_released_and_its_redelivery_reserves_again(meter: Meter) -> None:
    kw = {"key": "d3:parse", "service": "llamaparse", "stage": "parse", "estimate": Charge(Decimal("0.01"))}
    meter.release(meter.reserve(**kw))
    assert meter.report().services["llamaparse"].reserved == 0
    held = meter.reserve(**kw)
    assert held.state == "reserved" and meter.report().services["llamaparse"].reserved == Decimal("0.01")
    meter.settle(held, Charge(Decimal("0.00875")))
    assert _rows(meter) == [("d3:parse", False, "charged", Decimal("0.00875"))]


def test_shadow_costs_are_keyed_apart_and_never_counted(meter: Meter) -> None:
    with meter.pool.connection() as conn:
        conn.execute("INSERT INTO cost_budgets (service, daily_limit_usd) VALUES ('openai', 0)")
    kw = {"key": "d4:embed:0-3", "service": "openai", "stage": "embed", "estimate": Charge(Decimal("0.5"))}
    for _ in range(2):
        meter.settle(meter.reserve(simulated=True, **kw), Charge(Decimal("0.5")))
    report = meter.report()
    assert (report.services["openai"].spent, report.services["openai"].simulated) == (0, Decimal("0.5"))
    assert not meter.budget_ok("openai")  # the zero limit is spent; shadow costs did not count
    assert _rows(meter) == [("d4:embed:0-3", True, "charged", Decimal("0.5"))]


def test_redelivered_stage_messages_are_charged_once(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    metered_runtime: Callable[..., AbstractContextManager[Any]],
    submit_text: Callable[..., Submitted],
) -> None:
    with metered_runtime(settings) as (rt, vendor, _clock):
        rt.router.modes.set(Mode.REAL, ("openai",))
        sub = submit_text(rt, tmp_path)
        pending = parse_stage(rt, sub.job_id)
        assert parse_stage(rt, sub.job_id) == pending  # a redelivered parse message: no second parse

        # The first delivery of batch 0 is charged, then its worker dies before the vectors are stored.
        real_write = vectors.write
        monkeypatch.setattr(vectors, "write", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError):
            embed_stage(rt, sub.job_id, pending[0].first, pending[0].last)
        monkeypatch.setattr(vectors, "write", real_write)

        for batch in pending:  # the broker redelivers batch 0 with the others
            embed_stage(rt, sub.job_id, batch.first, batch.last)
        for batch in pending:  # and then every message once more
            embed_stage(rt, sub.job_id, batch.first, batch.last)
        with rt.pool.connection() as conn:
            rows = conn.execute(
                "SELECT key, count(*), sum(amount_usd) FROM cost_entries"
                " WHERE NOT simulated AND state = 'charged' GROUP BY key ORDER BY key"
            ).fetchall()
            shadow = conn.execute("SELECT count(*) FROM cost_entries WHERE simulated").fetchone()[0]
    assert len(rows) == len(pending) and all(n == 1 for _, n, _ in rows)  # one charge per batch
    assert shadow == 1  # the one (mock) parse
    # The second call for batch 0 reused its charged row (one charge per thing paid for).
    assert len(vendor.calls) == len(pending) + 1
