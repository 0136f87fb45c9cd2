"""`ingest reembed --when-cheapest` end to end: a run whose embeddings go through the OpenAI stand-in's Files
and Batches APIs (the official SDK over loopback HTTP), the real database, the in-process workers.

What must hold: every chunk gets exactly one vector in the new space, each from one batch line; the
ledger charges the Batch API's price of exactly the tokens the stand-in's batches billed, and `ingest
costs` shows the saving; a process that dies while the batch runs (even right after creating it) makes
no second batch; an expired batch ends as the run's fallback says; the run switches as any run does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.types import ASGIApp
from typer.testing import CliRunner

from costs.money import fmt_usd
from costs.prices import DEFAULT_PRICES
from ingest.cli.main import app as cli
from ingest.config import Settings
from ingest.services import reembed as service
from ingest.store import embedding_batches, reembeds
from mocks import server
from mocks.faults import FaultPlan
from mocks.openai_batch_api import BatchStandin
from tests.integration.conftest import INGEST
from workers import batch_route, reembed
from workers.runtime import Runtime

LARGE = ("text-embedding-3-large", 32)
REDIS_URL = "redis://127.0.0.1:6379/0"


def ingest(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, terminal_width=200)
    assert result.exit_code == code, result.output + result.stderr
    return result.stdout + result.stderr


def _rows(database_url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


def _write(folder: Path, name: str, topic: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(
        "\n\n".join(f"{topic} note {i}: how {topic} behave in spring and winter." for i in range(10))
    )
    return path


@pytest.fixture
def corpus(standins: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Two documents ingested synchronously into text-embedding-3-small/64, OpenAI in real mode against
    the stand-ins; batches followed fast."""
    for name, value in {
        "INGEST_OPENAI_EMBEDDING_DIMENSIONS": "64",
        "INGEST_CHUNK_TOKENS": "32",
        "INGEST_CHUNK_OVERLAP": "0",
        "INGEST_SWEEP_INTERVAL_S": "0.2",
        "INGEST_BATCH_POLL_S": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    ingest("mode", "set", "real", "--service", "openai")
    docs = tmp_path / "docs"
    ingest("add", str(_write(docs, "otters.txt", "otters")), str(_write(docs, "herons.txt", "herons")))
    return standins


def batches_of(app: Any) -> BatchStandin:
    return app.state.openai.state.batches  # type: ignore[no-any-return]


def _endpoint_requests(app: Any) -> int:
    return int(app.state.openai.state.ledger.requests)


def _target_vectors(database_url: str, model: str, dimensions: int) -> dict[int, int]:
    """Chunk id -> how many vectors it has in the space of (model, dimensions)."""
    [(table,)] = _rows(
        database_url,
        "SELECT table_name FROM embedding_spaces WHERE model = %s AND dimensions = %s",
        model,
        dimensions,
    )
    return dict(
        _rows(
            database_url,
            f"SELECT c.id, count(v.chunk_id) FROM chunks c LEFT JOIN {table} v ON v.chunk_id = c.id GROUP BY c.id",
        )
    )


def _reembed_charges(database_url: str) -> list[tuple[str, str, Decimal, dict[str, Any]]]:
    return [
        tuple(r)  # type: ignore[misc]
        for r in _rows(
            database_url,
            "SELECT key, state, amount_usd, usage FROM cost_entries WHERE stage = 'reembed' AND NOT simulated"
            " ORDER BY id",
        )
    ]


def test_a_when_cheapest_run_embeds_every_chunk_once_through_one_batch_at_the_batch_price(
    corpus: Any, database_url: str
) -> None:
    state = batches_of(corpus)
    endpoint_before = _endpoint_requests(corpus)
    chunk_ids = sorted(r[0] for r in _rows(database_url, "SELECT id FROM chunks"))
    (tokens,) = _rows(database_url, "SELECT sum(token_count) FROM chunks")[0]

    quote = ingest(
        "reembed", "--model", LARGE[0], "--dimensions", str(LARGE[1]), "--when-cheapest", "--estimate"
    )
    full, half = (
        DEFAULT_PRICES.tokens_usd(tokens, LARGE[0]),
        DEFAULT_PRICES.batch_tokens_usd(tokens, LARGE[0]),
    )
    assert f"{tokens} tokens to pay for: ${fmt_usd(full)}" in quote  # both prices quoted
    assert f"through the Batch API (--when-cheapest, within 24 hours): ${fmt_usd(half)}" in quote

    out = ingest("reembed", "--model", LARGE[0], "--dimensions", str(LARGE[1]), "--when-cheapest", "--yes")
    assert "started through the Batch API" in out
    assert f"every search now reads {LARGE[0]}/{LARGE[1]}" in out

    # Every chunk has exactly one vector in the new space, each from one line of the one batch.
    assert set(_target_vectors(database_url, *LARGE).values()) == {1}
    assert len(state.batches) == 1
    answered = Counter(int(custom_id) for custom_id in state.completed_lines())
    assert sorted(answered) == chunk_ids and set(answered.values()) == {1}
    assert _endpoint_requests(corpus) == endpoint_before  # nothing went through the endpoint
    moved = _rows(
        database_url, "SELECT count(*) FROM chunks c JOIN active_space a ON a.space_id = c.space_id"
    )
    assert moved == [(len(chunk_ids),)]

    # The ledger charges the Batch API's price of exactly what the stand-in's batch billed.
    [(key, status, amount, usage)] = _reembed_charges(database_url)
    assert key.startswith("reembed:1:batch:") and status == "charged"
    assert usage["tokens"] == state.billed_tokens == tokens and usage["model"] == LARGE[0]
    assert amount == DEFAULT_PRICES.batch_tokens_usd(state.billed_tokens, LARGE[0]) == half
    saved = DEFAULT_PRICES.tokens_usd(state.billed_tokens, LARGE[0]) - amount
    assert saved > 0
    report = " ".join(ingest("costs").split())
    assert f"at the Batch API's price: saved ${fmt_usd(saved)}" in report
    status = ingest("reembed", "--status")
    assert f"switched, {len(chunk_ids)}/{len(chunk_ids)} chunks, ${fmt_usd(amount)} charged" in status
    assert f"(quoted ${fmt_usd(half)})" in status


def _start(rt: Runtime, **route: Any) -> reembeds.Run:
    planned = service.plan(rt, *LARGE)
    run = service.start(rt, planned, when_cheapest=True, **route)
    # The first step, as the actor runs it: it queues the run's inputs and waits for their batch.
    assert reembed.advance(rt, run.id, run.step) is not None
    return run


def _finish(rt: Runtime, run_id: int) -> reembeds.Run:
    """The run's next steps, as the actor runs them, until it ends."""
    while True:
        with rt.pool.connection() as conn:
            run = reembeds.get(conn, run_id)
        assert run is not None
        if reembed.advance(rt, run.id, run.step) is None:
            with rt.pool.connection() as conn:
                ended = reembeds.get(conn, run_id)
            assert ended is not None
            return ended


def test_a_process_killed_while_the_batch_runs_makes_no_second_batch(
    corpus: Any, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    state = batches_of(corpus)
    state.delay_s = 3600  # the batch stays in progress until the test lets it finish
    with Runtime.open(Settings(_env_file=None)) as rt:
        run = _start(rt)

        # The process dies between the vendor creating the batch and our recording its id.
        def died(*_: object, **__: object) -> None:
            raise SystemExit("killed")

        with monkeypatch.context() as patch, pytest.raises(SystemExit):
            patch.setattr(embedding_batches, "record_vendor", died)
            batch_route.tend(rt)
    assert len(state.batches) == 1
    [(hold_s,)] = _rows(
        database_url,
        "SELECT extract(epoch FROM expires_at - now()) FROM cost_entries WHERE stage = 'reembed' AND state = 'reserved'",
    )
    assert hold_s > 24 * 3600  # the hold covers the batch's whole window

    # A new process finds the batch by its metadata and waits on it; the run says so.
    with Runtime.open(Settings(_env_file=None)) as rt:
        batch_route.tend(rt)
        assert reembed.advance(rt, run.id, run.step + 1) is not None  # a look: still waiting
        vendor_id = next(iter(state.batches))
        status = ingest("reembed", "--status")
        assert f"waiting for batch {vendor_id} (deadline 20" in status
        assert "building" in status
        [(deadline,)] = _rows(database_url, "SELECT expires_at FROM embedding_batches")
        assert deadline is not None
    assert len(state.batches) == 1

    # Another restart; the batch is done meanwhile. The run completes, verifies and switches.
    state.delay_s = 0
    with Runtime.open(Settings(_env_file=None)) as rt:
        batch_route.tend(rt)
        ended = _finish(rt, run.id)
    assert ended.status == "switched"
    assert len(state.batches) == 1
    assert set(_target_vectors(database_url, *LARGE).values()) == {1}
    [(_, status_, amount, usage)] = _reembed_charges(database_url)
    assert status_ == "charged" and usage["tokens"] == state.billed_tokens
    assert amount == DEFAULT_PRICES.batch_tokens_usd(state.billed_tokens, LARGE[0])


def test_an_expired_batch_ends_as_the_run_prefers(corpus: Any, database_url: str) -> None:
    state = batches_of(corpus)
    chunks = len(_rows(database_url, "SELECT id FROM chunks"))

    # `--batch-fallback sync`: the half the batch answered is charged at its price, the rest goes
    # through the endpoint at the full price.
    state.faults.expire = 1
    endpoint_before = corpus.state.openai.state.ledger.prompt_tokens
    out = ingest(
        "reembed",
        "--model",
        LARGE[0],
        "--dimensions",
        "32",
        "--when-cheapest",
        "--batch-fallback",
        "sync",
        "--yes",
    )
    assert "every search now reads text-embedding-3-large/32" in out
    [batch] = state.batches.values()
    assert batch.body["status"] == "expired"
    assert set(_target_vectors(database_url, *LARGE).values()) == {1}
    synced = corpus.state.openai.state.ledger.prompt_tokens - endpoint_before
    charges = _reembed_charges(database_url)
    assert {s for _, s, _, _ in charges} == {"charged"}  # the batch's hold settled, nothing left reserved
    in_batch = [(a, u) for k, _, a, u in charges if ":batch:" in k]
    by_endpoint = [(a, u) for k, _, a, u in charges if ":batch:" not in k]
    assert len(in_batch) == 1 and by_endpoint
    assert in_batch[0][1]["tokens"] == state.billed_tokens
    assert in_batch[0][0] == DEFAULT_PRICES.batch_tokens_usd(state.billed_tokens, LARGE[0])
    assert sum(u["tokens"] for _, u in by_endpoint) == synced
    assert sum(a for a, _ in by_endpoint) == DEFAULT_PRICES.tokens_usd(synced, LARGE[0])
    assert len(state.completed_lines()) < chunks

    # The default fallback (`batch`): what the expired batch left goes in a second batch.
    state.faults.expire = 1
    out = ingest("reembed", "--model", LARGE[0], "--dimensions", "16", "--when-cheapest", "--yes")
    assert "every search now reads text-embedding-3-large/16" in out
    runs = list(state.batches.values())[1:]
    assert [b.body["status"] for b in runs] == ["expired", "completed"]
    assert set(_target_vectors(database_url, LARGE[0], 16).values()) == {1}
    second = [(k, a, u) for k, _, a, u in _reembed_charges(database_url) if k.startswith("reembed:2:")]
    assert len(second) == 2 and all(":batch:" in k for k, _, _ in second)
    billed = sum(b.billed_tokens for b in runs)
    assert sum(u["tokens"] for _, _, u in second) == billed
    assert sum(a for _, a, _ in second) == sum(
        DEFAULT_PRICES.batch_tokens_usd(b.billed_tokens, LARGE[0]) for b in runs
    )


def test_inputs_no_batch_embedded_fail_the_run_and_release_its_hold(
    corpus: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_BATCH_MAX_ATTEMPTS", "1")
    state = batches_of(corpus)
    state.faults.invalid = 1  # the batch fails validation: nothing runs, nothing is billed
    out = ingest("reembed", "--model", LARGE[0], "--dimensions", "32", "--when-cheapest", "--yes", code=1)
    assert "ended failed" in out and "inputs were not embedded after 1 batches" in out
    assert "failed" in ingest("reembed", "--status")
    assert [s for _, s, _, _ in _reembed_charges(database_url)] == ["released"]
    assert _rows(database_url, "SELECT count(*) FROM embedding_batch_items") == [(0,)]
    (active,) = _rows(
        database_url, "SELECT s.model FROM active_space a JOIN embedding_spaces s ON s.id = a.space_id"
    )
    assert active == ("text-embedding-3-small",)  # searches never left the old space


@pytest.mark.redis
def test_a_worker_killed_while_the_runs_batch_runs_makes_no_second_batch(
    ingest_env: dict[str, str],
    redis_namespace: str,
    no_fault_env: None,
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
    worker_process: Callable[..., AbstractContextManager[subprocess.Popen[bytes]]],
    run_ingest: Callable[..., subprocess.CompletedProcess[str]],
    database_url: str,
    tmp_path: Path,
) -> None:
    """Production shape: Redis, separate `ingest worker` processes; the first is SIGKILLed while the
    run's batch is out, and the second collects it and switches."""
    app = server.create_app(FaultPlan())
    batches = app.state.openai.state.batches
    with serving(app) as base:
        env = {
            **os.environ,
            **ingest_env,
            "REDIS_URL": REDIS_URL,
            "INGEST_BROKER_NAMESPACE": redis_namespace,
            "OPENAI_API_KEY": "sk-standin-key",
            "OPENAI_BASE_URL": f"{base}/v1",
            "INGEST_OPENAI_EMBEDDING_DIMENSIONS": "64",
            "INGEST_CHUNK_TOKENS": "32",
            "INGEST_CHUNK_OVERLAP": "0",
            "INGEST_SWEEP_INTERVAL_S": "0.5",
            "INGEST_BATCH_POLL_S": "0.1",
        }
        assert run_ingest(env, "mode", "set", "real", "--service", "openai").returncode == 0
        docs = tmp_path / "docs"
        with open(tmp_path / "first.log", "wb") as log:
            first = subprocess.Popen(
                [INGEST, "worker", "--processes", "1", "--threads", "2"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            added = run_ingest(
                env,
                "add",
                str(_write(docs, "otters.txt", "otters")),
                str(_write(docs, "herons.txt", "herons")),
            )
            assert added.returncode == 0, added.stdout + added.stderr
            batches.delay_s = 3600  # in progress until the first worker is dead
            started = run_ingest(
                env,
                "reembed",
                "--model",
                LARGE[0],
                "--dimensions",
                str(LARGE[1]),
                "--when-cheapest",
                "--yes",
                "--no-wait",
            )
            assert started.returncode == 0, started.stdout + started.stderr
            _until(
                lambda: (
                    _rows(database_url, "SELECT count(*) FROM embedding_batches WHERE status = 'submitted'")
                    == [(1,)]
                ),
                "the run's batch to be sent",
            )
            status = run_ingest(env, "reembed", "--status").stdout
            assert "waiting for batch batch_" in status and "(deadline 20" in status
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()

        batches.delay_s = 0  # the batch finishes while no worker is there
        with worker_process(env, tmp_path / "second.log"):
            _until(
                lambda: _rows(database_url, "SELECT status FROM reembeds") == [("switched",)], "the switch"
            )
    assert len(batches.batches) == 1
    chunk_ids = sorted(r[0] for r in _rows(database_url, "SELECT id FROM chunks"))
    answered = Counter(int(c) for c in batches.completed_lines())
    assert sorted(answered) == chunk_ids and set(answered.values()) == {1}
    assert set(_target_vectors(database_url, *LARGE).values()) == {1}
    [(_, state, amount, usage)] = _reembed_charges(database_url)
    assert state == "charged" and usage["tokens"] == batches.billed_tokens
    assert amount == DEFAULT_PRICES.batch_tokens_usd(batches.billed_tokens, LARGE[0])


def _until(check: Callable[[], bool], what: str, limit_s: float = 180) -> None:
    """Poll until `check` holds (a guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.2)
