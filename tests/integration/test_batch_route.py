"""The batch route end to end: `ingest add --when-cheapest` in real mode against the OpenAI stand-in's Files
and Batches APIs (the official SDK over loopback HTTP), the real database, the in-process workers.

What must hold: every chunk embedded once, by one batch line; the ledger charges the Batch API's price of
exactly the tokens the stand-in's batches billed; `ingest costs` shows the saving; a restart (or a
process that died right after creating a batch) creates no second batch; an expired batch and failed
lines end as the job's fallback says.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from costs.money import fmt_usd
from costs.prices import DEFAULT_PRICES
from ingest.cli.main import app as cli
from ingest.config import Settings
from ingest.services.submit import submit_file
from ingest.store import embedding_batches, jobs
from ingest.store.users import ensure_user
from tests.integration.conftest import batches_of, db_rows
from workers import batch_answers, batch_route
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MODEL = "text-embedding-3-small"
ONE_FILE = SAMPLES / "docker-plugins-volume.md"


def ingest(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def _chunk_ids(database_url: str) -> list[int]:
    return [r[0] for r in db_rows(database_url, "SELECT id FROM chunks ORDER BY id")]


def _embedded_once_by_batches(database_url: str, app: Any) -> None:
    """Every chunk has a vector, and the stand-in answered each chunk's line exactly once."""
    ids = _chunk_ids(database_url)
    assert ids
    assert db_rows(database_url, "SELECT count(*) FROM chunks WHERE space_id IS NULL") == [(0,)]
    answered = Counter(batches_of(app).completed_lines())
    assert sorted(int(custom_id) for custom_id in answered) == ids
    assert set(answered.values()) == {1}


def _openai_charges(database_url: str) -> list[tuple[str, str, Decimal, dict[str, Any]]]:
    return [
        (key, state, amount, usage)
        for key, state, amount, usage in db_rows(
            database_url,
            "SELECT key, state, amount_usd, usage FROM cost_entries"
            " WHERE service = 'openai' AND NOT simulated ORDER BY id",
        )
    ]


def test_a_corpus_completes_through_one_batch_at_the_batch_price(
    database_url: str, batch_standin: Any
) -> None:
    out = ingest("add", str(SAMPLES), "--when-cheapest")
    assert "6 completed" in out
    _embedded_once_by_batches(database_url, batch_standin)
    state = batches_of(batch_standin)
    assert len(state.batches) == 1  # the six jobs shared one batch
    assert batch_standin.state.openai.state.ledger.requests == 0  # nothing went through the endpoint

    charges = _openai_charges(database_url)
    assert {state_ for _, state_, _, _ in charges} == {"charged"}
    assert all(":embed-batch:" in key for key, _, _, _ in charges)
    billed = state.billed_tokens
    assert sum(usage["tokens"] for *_, usage in charges) == billed
    for *_, amount, usage in charges:
        assert amount == DEFAULT_PRICES.batch_tokens_usd(usage["tokens"], MODEL)
    charged = sum((amount for _, _, amount, _ in charges), Decimal(0))
    assert charged == DEFAULT_PRICES.batch_tokens_usd(billed, MODEL)
    saved = DEFAULT_PRICES.tokens_usd(billed, MODEL) - charged
    assert saved > 0

    report = " ".join(ingest("costs").split())  # one line, however the terminal wrapped it
    chunks = len(_chunk_ids(database_url))
    assert (
        f"batch route: {chunks} chunks ({billed} tokens) at the Batch API's price: saved ${fmt_usd(saved)}"
        in report
    )


def _submit(rt: Runtime, path: Path, *, fallback: str = "batch") -> UUID:
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    return submit_file(rt, path, user=user, when_cheapest=True, batch_fallback=fallback).job_id


def _embed(rt: Runtime, job_id: UUID) -> None:
    """The parse and embed stages, as the actors run them (the tender's message waits unconsumed)."""
    for batch in parse_stage(rt, job_id):
        embed_stage(rt, job_id, batch.first, batch.last)


def _job(rt: Runtime, job_id: UUID) -> jobs.Job:
    with rt.pool.connection() as conn:
        job = jobs.get(conn, job_id)
    assert job is not None
    return job


def test_a_restart_and_a_death_after_create_make_no_second_batch(
    batch_standin: Any, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    state = batches_of(batch_standin)
    state.delay_s = 3600  # the batch stays in progress until the test lets it finish
    with Runtime.open(Settings(_env_file=None)) as rt:
        job_id = _submit(rt, ONE_FILE)
        _embed(rt, job_id)
        assert _job(rt, job_id).stage == "batch"

        # The process dies between the vendor creating the batch and our recording its id.
        def died(*_: object, **__: object) -> None:
            raise SystemExit("killed")

        with monkeypatch.context() as patch, pytest.raises(SystemExit):
            patch.setattr(embedding_batches, "record_vendor", died)
            batch_route.tend(rt)
    assert len(state.batches) == 1
    # The hold covers the batch's whole window, not the usual reservation time.
    [(hold_s,)] = db_rows(
        database_url,
        "SELECT extract(epoch FROM expires_at - now()) FROM cost_entries WHERE service = 'openai' AND state = 'reserved'",
    )
    assert hold_s > 24 * 3600

    # A new process (a restarted API or worker): it finds the batch by its metadata and waits on it.
    with Runtime.open(Settings(_env_file=None)) as rt:
        batch_route.tend(rt)
        with rt.pool.connection() as conn:
            waiting = embedding_batches.waiting(conn, [job_id])
        vendor_id = next(iter(state.batches))
        assert waiting[job_id].vendor_batch_id == vendor_id
        assert waiting[job_id].expires_at is not None
        assert "waiting for batch" in ingest("status", "--all")
        assert vendor_id in ingest("status", "--all")

    # Another restart, and the batch is done meanwhile.
    state.delay_s = 0
    with Runtime.open(Settings(_env_file=None)) as rt:
        batch_route.tend(rt)
        assert _job(rt, job_id).status == "completed"
    assert len(state.batches) == 1
    _embedded_once_by_batches(database_url, batch_standin)
    assert [s for _, s, _, _ in _openai_charges(database_url)] == ["charged"]


def test_an_expired_batch_falls_back_to_sync_at_the_full_price(batch_standin: Any, database_url: str) -> None:
    state = batches_of(batch_standin)
    state.faults.expire = 1  # half its lines are answered before it expires
    out = ingest("add", str(ONE_FILE), "--when-cheapest", "--batch-fallback", "sync")
    assert "1 completed" in out
    assert db_rows(database_url, "SELECT count(*) FROM chunks WHERE space_id IS NULL") == [(0,)]
    [batch] = state.batches.values()
    assert batch.body["status"] == "expired"
    answered = len(state.completed_lines())
    synced = batch_standin.state.openai.state.ledger
    assert answered + synced.inputs == len(_chunk_ids(database_url))
    charges = _openai_charges(database_url)
    assert {s for _, s, _, _ in charges} == {"charged"}  # the batch's hold settled, none left reserved
    batch_charges = [(a, u) for k, _, a, u in charges if ":embed-batch:" in k]
    sync_charges = [(a, u) for k, _, a, u in charges if ":embed-batch:" not in k]
    assert sum(u["tokens"] for _, u in batch_charges) == state.billed_tokens
    assert sum(a for a, _ in batch_charges) == DEFAULT_PRICES.batch_tokens_usd(state.billed_tokens, MODEL)
    assert sum(u["tokens"] for _, u in sync_charges) == synced.prompt_tokens
    assert sum(a for a, _ in sync_charges) == DEFAULT_PRICES.tokens_usd(synced.prompt_tokens, MODEL)


def test_an_expired_batch_and_failed_lines_go_in_a_later_batch(batch_standin: Any, database_url: str) -> None:
    state = batches_of(batch_standin)
    state.faults.expire = 1
    assert "1 completed" in ingest("add", str(ONE_FILE), "--when-cheapest")
    assert [b.body["status"] for b in state.batches.values()] == ["expired", "completed"]
    _embedded_once_by_batches(database_url, batch_standin)
    state.faults.fail_lines = 3
    assert "1 completed" in ingest("add", str(SAMPLES / "Apache-2.0.txt"), "--when-cheapest")
    assert len(state.batches) == 4  # the three failed lines went again, in a batch of their own
    assert list(state.batches.values())[-1].body["request_counts"]["total"] == 3
    _embedded_once_by_batches(database_url, batch_standin)
    assert batch_standin.state.openai.state.ledger.requests == 0
    charges = _openai_charges(database_url)
    assert {s for _, s, _, _ in charges} == {"charged"}
    assert sum(u["tokens"] for *_, u in charges) == state.billed_tokens


def test_inputs_still_not_embedded_after_the_last_attempt_fail_the_job(
    batch_standin: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_BATCH_MAX_ATTEMPTS", "2")
    state = batches_of(batch_standin)
    state.faults.invalid = 2  # both batches fail validation: nothing runs, nothing is billed
    out = ingest("add", str(ONE_FILE), "--when-cheapest", ok=False)
    assert "1 failed" in out
    [(error,)] = db_rows(database_url, "SELECT error FROM jobs")
    assert "inputs were not embedded after 2 batches" in error
    assert "failed validation" in error
    assert [b.body["status"] for b in state.batches.values()] == ["failed", "failed"]
    # The holds went back: a failed batch bills nothing, and nothing stays reserved.
    assert {s for _, s, _, _ in _openai_charges(database_url)} == {"released"}


def test_mock_mode_completes_at_once_with_shadow_costs_at_the_batch_price(
    ingest_env: dict[str, str], database_url: str
) -> None:
    assert "6 completed" in ingest("add", str(SAMPLES), "--when-cheapest")
    rows = db_rows(
        database_url,
        "SELECT amount_usd, usage FROM cost_entries WHERE service = 'openai' AND simulated AND state = 'charged'",
    )
    assert rows
    for amount, usage in rows:
        assert usage["route"] == "batch"
        assert amount == DEFAULT_PRICES.batch_tokens_usd(usage["tokens"], MODEL)
    tokens = sum(usage["tokens"] for _, usage in rows)
    assert db_rows(database_url, "SELECT count(*) FROM chunks WHERE space_id IS NULL") == [(0,)]
    assert "batch route:" in ingest("costs") and f"({tokens} tokens)" in ingest("costs")


def test_a_death_between_charging_and_storing_charges_once_and_stores_everything(
    batch_standin: Any, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    state = batches_of(batch_standin)
    with Runtime.open(Settings(_env_file=None)) as rt:
        job_id = _submit(rt, ONE_FILE)
        _embed(rt, job_id)

        def died(*_: object, **__: object) -> None:
            raise SystemExit("killed")

        with monkeypatch.context() as patch, pytest.raises(SystemExit):
            patch.setattr(batch_answers.vectors, "write", died)  # dies once the batch is charged
            batch_route.tend(rt)
        [(charged,)] = db_rows(database_url, "SELECT state FROM cost_entries WHERE service = 'openai'")
        assert charged == "charged"
    with Runtime.open(Settings(_env_file=None)) as rt:
        batch_route.tend(rt)
        assert _job(rt, job_id).status == "completed"
    assert len(state.batches) == 1
    _embedded_once_by_batches(database_url, batch_standin)
    [(key, status, amount, usage)] = _openai_charges(database_url)
    assert status == "charged" and usage["tokens"] == state.billed_tokens
    assert amount == DEFAULT_PRICES.batch_tokens_usd(state.billed_tokens, MODEL)


def test_hybrid_without_a_key_batches_through_the_mock_and_marks_the_chunks_for_upgrade(
    ingest_env: dict[str, str], database_url: str
) -> None:
    ingest("mode", "set", "hybrid", "--service", "openai")
    assert "1 completed" in ingest("add", str(ONE_FILE), "--when-cheapest")
    chunks = len(_chunk_ids(database_url))
    assert db_rows(database_url, "SELECT client FROM embedding_batches") == [("standin",)]
    # Mock vectors standing in for real ones: the hybrid upgrade re-embeds them once the service is back.
    assert f"chunks waiting for upgrade to the real embedder: {chunks}" in ingest("status")


def test_a_share_the_budget_refuses_waits_and_says_why_until_the_budget_allows(
    batch_standin: Any, database_url: str
) -> None:
    ingest("budget", "set", "0.000001", "--service", "openai")
    with Runtime.open(Settings(_env_file=None)) as rt:
        job_id = _submit(rt, ONE_FILE)
        _embed(rt, job_id)
        batch_route.tend(rt)
        job = _job(rt, job_id)
        assert (job.status, job.stage) == ("running", "batch")
        assert job.error is not None and job.error.startswith("openai: ") and "daily limit" in job.error
        assert batches_of(batch_standin).batches == {}  # nothing sent, nothing reserved
        assert _openai_charges(database_url) == []
        status = " ".join(ingest("status", "--all").split())
        assert "waiting for batch: openai" in status

        ingest("budget", "unset", "--service", "openai")
        batch_route.tend(rt)
        job = _job(rt, job_id)
        assert job.error is None  # its batch is out: the refusal no longer holds
        batch_route.tend(rt)
        assert _job(rt, job_id).status == "completed"
    _embedded_once_by_batches(database_url, batch_standin)
