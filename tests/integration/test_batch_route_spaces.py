"""The batch route and the active embedding space, against the OpenAI stand-in's Batch API in real mode:
a batch embeds for the space searches read when it is made (an `ingest reembed` switch included), and a
batch answered after a switch moved searches elsewhere stores nothing in the old space; its inputs go
again for the new one, and both batches stay charged, each at its own model's batch price.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
from typer.testing import CliRunner

from costs.prices import DEFAULT_PRICES
from ingest.cli.main import app as cli
from ingest.config import Settings
from ingest.services.submit import submit_file
from ingest.store import jobs, spaces, vectors
from ingest.store.users import ensure_user
from tests.integration.conftest import batches_of, db_rows
from workers import batch_route
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime

SMALL = ("text-embedding-3-small", 64)
LARGE = ("text-embedding-3-large", 32)


def ingest(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, terminal_width=200)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def write(folder: Path, name: str, topic: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(
        "\n\n".join(f"{topic} note {i}: how {topic} behave in spring and winter." for i in range(10))
    )
    return path


@pytest.fixture
def batch_standin_settings() -> dict[str, str]:
    """Small chunks, several a document; the first real space is SMALL."""
    return {
        "INGEST_OPENAI_EMBEDDING_DIMENSIONS": str(SMALL[1]),
        "INGEST_CHUNK_TOKENS": "32",
        "INGEST_CHUNK_OVERLAP": "0",
    }


def batch_charges(database_url: str) -> list[tuple[str, Decimal, dict[str, Any]]]:
    return [
        (state, amount, usage)
        for state, amount, usage in db_rows(
            database_url,
            "SELECT state, amount_usd, usage FROM cost_entries"
            " WHERE service = 'openai' AND NOT simulated AND key LIKE %s ORDER BY id",
            "%:embed-batch:%",
        )
    ]


def test_a_when_cheapest_job_after_a_reembed_switch_lands_in_the_active_space(
    batch_standin: Any, database_url: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    ingest("add", str(write(docs, "otters.txt", "otters")))
    assert f"every search now reads {LARGE[0]}/{LARGE[1]}" in ingest(
        "reembed", "--model", LARGE[0], "--dimensions", str(LARGE[1]), "--yes"
    )

    assert "1 completed" in ingest("add", str(write(docs, "herons.txt", "herons")), "--when-cheapest")

    assert db_rows(database_url, "SELECT model, dimensions FROM embedding_batches") == [LARGE]
    [(active_id,)] = db_rows(database_url, "SELECT space_id FROM active_space")
    herons = db_rows(
        database_url,
        "SELECT DISTINCT c.space_id FROM chunks c JOIN documents d ON d.id = c.document_id"
        " WHERE d.filename = 'herons.txt'",
    )
    assert herons == [(active_id,)]
    # Priced at the active model's Batch API price, for exactly the tokens the stand-in billed.
    [(state, amount, usage)] = batch_charges(database_url)
    billed = batches_of(batch_standin).billed_tokens
    assert state == "charged" and usage["tokens"] == billed
    assert amount == DEFAULT_PRICES.batch_tokens_usd(billed, LARGE[0])

    # Searches read the active space only: the vectors are found there.
    found = json.loads(ingest("search", "how herons behave in winter", "--mode", "vector", "--json"))
    assert found["results"][0]["filename"] == "herons.txt"


def job_charges(database_url: str, job_id: UUID) -> list[tuple[str, str, Decimal, dict[str, Any]]]:
    """The job's OpenAI ledger entries: (key, state, amount, usage)."""
    return [
        (key, state, amount, usage)
        for key, state, amount, usage in db_rows(
            database_url,
            "SELECT key, state, amount_usd, usage FROM cost_entries"
            " WHERE service = 'openai' AND NOT simulated AND job_id = %s ORDER BY id",
            job_id,
        )
    ]


@pytest.mark.parametrize("fallback", ["batch", "sync"])
def test_a_batch_answered_after_a_switch_stores_nothing_in_the_old_space_and_goes_again(
    batch_standin: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fallback: str
) -> None:
    # A batch that embedded for a space searches left is not one of the inputs' attempts: one is allowed.
    monkeypatch.setenv("INGEST_BATCH_MAX_ATTEMPTS", "1")
    docs = tmp_path / "docs"
    ingest("add", str(write(docs, "otters.txt", "otters")))  # makes the small space active
    state = batches_of(batch_standin)
    endpoint = batch_standin.state.openai.state.ledger
    state.delay_s = 3600  # the first batch runs until the switch has committed
    with Runtime.open(Settings(_env_file=None)) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")
        herons = write(docs, "herons.txt", "herons")
        job_id = submit_file(rt, herons, user=user, when_cheapest=True, batch_fallback=fallback).job_id
        for part in parse_stage(rt, job_id):
            embed_stage(rt, job_id, part.first, part.last)
        batch_route.tend(rt)
        assert db_rows(database_url, "SELECT model, dimensions FROM embedding_batches") == [SMALL]
        synced_before = endpoint.prompt_tokens

        # What a reembed run's last step does: the new space holds every chunk, then the switch.
        with rt.pool.connection() as conn, conn.transaction():
            old = spaces.active_space(conn)
            assert old is not None and (old.model, old.dimensions) == SMALL
            new = vectors.ensure_space(conn, *LARGE, simulated=False)
            spaces.lock(conn)
            ids = [r[0] for r in conn.execute("SELECT id FROM chunks WHERE space_id = %s", (old.id,))]
            vectors.write(conn, new, ids, np.ones((len(ids), LARGE[1]), np.float32))
            spaces.switch(conn, old, new)
            in_old = vectors.count(conn, old)

        state.delay_s = 0
        for _ in range(5):  # collect the first batch, then send its inputs again and collect them
            batch_route.tend(rt)
            if fallback == "sync":  # the job left the batch route: the stages its message runs
                for part in parse_stage(rt, job_id):
                    embed_stage(rt, job_id, part.first, part.last)
            with rt.pool.connection() as conn:
                job = jobs.get(conn, job_id)
            assert job is not None
            if job.status != "running":
                break
        assert job.status == "completed"
        with rt.pool.connection() as conn:
            assert vectors.count(conn, old) == in_old  # nothing of the late batch went to the old space
            stored = conn.execute(
                "SELECT DISTINCT space_id FROM chunks WHERE document_id = %s", (job.document_id,)
            ).fetchall()
    assert stored == [(new.id,)]

    # The vendor billed the first batch and the second embedding: both are charged, each at its price.
    first, *again = state.batches.values()
    first_tokens = first.body["usage"]["input_tokens"]
    assert first.body["request_counts"]["completed"] > 0 and first_tokens > 0
    charges = job_charges(database_url, job_id)
    assert {s for _, s, _, _ in charges} == {"charged"}
    [(first_id,)] = db_rows(database_url, "SELECT id FROM embedding_batches ORDER BY created_at LIMIT 1")
    assert [(a, u["tokens"]) for k, _, a, u in charges if k.endswith(str(first_id))] == [
        (DEFAULT_PRICES.batch_tokens_usd(first_tokens, SMALL[0]), first_tokens)
    ]
    rest = [(a, u["tokens"]) for k, _, a, u in charges if not k.endswith(str(first_id))]
    tokens = sum(t for _, t in rest)
    if fallback == "batch":
        [second] = again
        assert db_rows(
            database_url, "SELECT model, dimensions FROM embedding_batches ORDER BY created_at"
        ) == [
            SMALL,
            LARGE,
        ]
        assert tokens == second.body["usage"]["input_tokens"] > 0
        assert sum(a for a, _ in rest) == DEFAULT_PRICES.batch_tokens_usd(tokens, LARGE[0])
        assert endpoint.prompt_tokens == synced_before
    else:
        assert again == []
        assert tokens == endpoint.prompt_tokens - synced_before > 0
        assert sum(a for a, _ in rest) == DEFAULT_PRICES.tokens_usd(tokens, LARGE[0])
