"""The budget runs out mid-document. Real mode: the job is deferred to the next budget day, nothing is
lost, and it completes after the day rolls over (simulated clock). Hybrid: it falls back to mock.
Mock: only shadow costs, never counted."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costs import ledger
from costs import report as costs_report
from costs.estimate import embed_tokens
from costs.money import ZERO
from ingest.config import Settings
from ingest.leases import embed_unit
from ingest.services.submit import Submitted
from ingest.store import chunks, documents, jobs
from router.decide import Mode
from workers import leasing, messages
from workers.embed_stage import embed_stage
from workers.metering import JobDeferred, defer_job
from workers.parse_stage import parse_stage


def _batch_cost(rt, document_id, batch) -> Decimal:
    with rt.pool.connection() as conn:
        pending = chunks.pending_in_range(conn, document_id, batch.first, batch.last)
    return rt.router.meter.embed_charge(embed_tokens([c.text for c in pending])).usd


def _rows(rt) -> list[tuple]:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT key, simulated, state, budget_day, amount_usd FROM cost_entries ORDER BY key, simulated"
        ).fetchall()


def test_real_mode_defers_to_the_next_budget_day_and_completes_after_rollover(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    metered_runtime: Callable[..., AbstractContextManager[Any]],
    submit_text: Callable[..., Submitted],
) -> None:
    with metered_runtime(settings) as (rt, vendor, clock):
        rt.router.modes.set(Mode.REAL, ("openai",))
        sub = submit_text(rt, tmp_path)
        pending = parse_stage(rt, sub.job_id)  # llamaparse in mock mode: a shadow cost only
        assert len(pending) >= 3
        first, second = (_batch_cost(rt, sub.document_id, b) for b in pending[:2])
        limit = first + second / 2  # room for the first batch, not the second
        with rt.pool.connection() as conn:
            ledger.set_limit(conn, "openai", limit)

        assert not embed_stage(rt, sub.job_id, pending[0].first, pending[0].last)
        with pytest.raises(JobDeferred) as deferred:
            embed_stage(rt, sub.job_id, pending[1].first, pending[1].last)
        resume_at = rt.router.meter.next_day_start()
        assert deferred.value.delay_s == rt.router.meter.seconds_to_next_day()

        # The actor's handling of the deferral: job deferred, message re-sent for the next budget day.
        sent: list[dict] = []
        monkeypatch.setattr(
            messages.actor(messages.PARSE_DOCUMENT), "send_with_options", lambda **kw: sent.append(kw)
        )
        with leasing.holding(rt, sub.job_id, embed_unit(pending[1].first, pending[1].last)) as lease:
            assert lease is not None
            defer_job(rt, lease, deferred.value)
        assert sent == [{"args": (str(sub.job_id),), "delay": deferred.value.delay_s * 1000}]
        with rt.pool.connection() as conn:
            job = jobs.get(conn, sub.job_id)
            doc = documents.get(conn, sub.document_id)
        assert (job.status, doc.status) == ("deferred", "deferred")
        # deferred_until is now() + delay, the delay rounded up to whole seconds from the meter's clock.
        assert resume_at <= job.deferred_until < resume_at + timedelta(seconds=60)
        assert "budget" in job.error

        # Batches delivered meanwhile do nothing; nothing was dropped.
        for batch in pending[2:]:
            assert not embed_stage(rt, sub.job_id, batch.first, batch.last)
        with rt.pool.connection() as conn:
            assert chunks.count(conn, sub.document_id) == job.chunks_total
            assert len(chunks.missing_ordinals(conn, sub.document_id)) == job.chunks_total - 4
        assert len(vendor.calls) == 1

        # The same day, a redelivered message is deferred again (to the same instant), without a call.
        with pytest.raises(JobDeferred):
            for batch in parse_stage(rt, sub.job_id):
                embed_stage(rt, sub.job_id, batch.first, batch.last)

        # The budget day rolls over: the re-enqueued message completes the job.
        clock.now = resume_at + timedelta(seconds=1)
        assert rt.router.meter.budget_ok("openai")
        with rt.router.meter.pool.connection() as conn:
            ledger.set_limit(conn, "openai", first + second * 10)  # a budget for the rest of the document
        completed = [embed_stage(rt, sub.job_id, b.first, b.last) for b in parse_stage(rt, sub.job_id)]
        assert completed[-1] and completed.count(True) == 1
        with rt.pool.connection() as conn:
            assert jobs.get(conn, sub.job_id).status == "completed"
            assert chunks.missing_ordinals(conn, sub.document_id) == []
            at = clock()
            by_document = costs_report.by_documents(conn, [sub.document_id], at=at)[sub.document_id]
            by_job = costs_report.by_jobs(conn, [sub.job_id], at=at)[sub.job_id]
        rows = _rows(rt)

    real = [r for r in rows if not r[1]]
    assert all(state == "charged" for _, _, state, _, _ in real)
    assert len(real) == len(pending) == len(vendor.calls)  # one charge per batch, none twice
    assert real[0][3] == resume_at.date() - timedelta(days=1)  # batch 0 on the first day
    assert {r[3] for r in real[1:]} == {resume_at.date()}  # the rest after the rollover
    assert sum(r[4] for r in real if r[3] < resume_at.date()) <= limit
    # Exact: the ledger is the price applied to the tokens the vendor billed.
    assert sum(r[4] for r in real) == rt.router.meter.embed_charge(sum(vendor.calls)).usd
    # Cost per document and per job: the real charges, and the parse's shadow cost apart.
    shadow = sum(r[4] for r in rows if r[1])
    assert by_document == by_job == costs_report.Amounts(spent=sum(r[4] for r in real), simulated=shadow)


def test_hybrid_mode_falls_back_to_mock_when_the_budget_is_spent(
    settings: Settings,
    tmp_path: Path,
    metered_runtime: Callable[..., AbstractContextManager[Any]],
    submit_text: Callable[..., Submitted],
) -> None:
    with metered_runtime(settings) as (rt, vendor, _clock):
        rt.router.modes.set(Mode.HYBRID, ("openai",))
        sub = submit_text(rt, tmp_path)
        pending = parse_stage(rt, sub.job_id)
        limit = _batch_cost(rt, sub.document_id, pending[0])
        with rt.pool.connection() as conn:
            ledger.set_limit(conn, "openai", limit)
        done = [embed_stage(rt, sub.job_id, b.first, b.last) for b in pending]
        assert done[-1]
        report = rt.router.meter.report()
        embeds = [r for r in _rows(rt) if ":embed:" in r[0]]
    assert len(vendor.calls) == 1  # the first batch was real; the others went to mock
    assert report.services["openai"].spent == limit
    assert report.services["openai"].simulated > 0
    assert [r[1] for r in embeds].count(False) == 1 and [r[1] for r in embeds].count(True) == len(pending) - 1


def test_mock_mode_records_shadow_costs_that_no_budget_counts(
    settings: Settings,
    tmp_path: Path,
    metered_runtime: Callable[..., AbstractContextManager[Any]],
    submit_text: Callable[..., Submitted],
) -> None:
    with metered_runtime(settings) as (rt, vendor, _clock):
        with rt.pool.connection() as conn:
            ledger.set_limit(conn, "openai", ZERO)
            ledger.set_limit(conn, "llamaparse", ZERO)
        sub = submit_text(rt, tmp_path)
        done = [embed_stage(rt, sub.job_id, b.first, b.last) for b in parse_stage(rt, sub.job_id)]
        assert done[-1]
        report = rt.router.meter.report()
        rows = _rows(rt)
    assert vendor.calls == []
    for service in ("llamaparse", "openai"):
        assert report.services[service].spent == 0 and report.services[service].simulated > 0
    assert all(simulated and state == "charged" for _, simulated, state, _, _ in rows)
