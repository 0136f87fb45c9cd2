"""The sample folder in real mode through both stand-ins answering 30% of requests with 429s, 500s and
timeouts (fixed seed): every document still completes with the same chunks as a fault-free run, no
chunk or vector is stored twice, and every call the stand-ins served is in the ledger exactly once.

Backoffs and the client timeout are shortened through settings only, as an operator would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from starlette.types import ASGIApp
from typer.testing import CliRunner

from costs.prices import price_table
from ingest.cli.main import app as cli
from ingest.config import Settings
from mocks import server
from mocks.faults import FaultPlan
from mocks.llamaparse_jobs import StandinState
from mocks.openai_api import Ledger

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# Timeouts are the smallest share only because each costs a whole client timeout of test time.
STORM = FaultPlan(rate_429=0.12, rate_500=0.12, rate_timeout=0.06, retry_after_s=0.01, timeout_s=2.0, seed=7)

pytestmark = pytest.mark.slow


@pytest.fixture
def real_mode(
    ingest_env: dict[str, str], no_fault_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    for name, value in {
        "INGEST_VENDOR_MAX_ATTEMPTS": "12",
        "INGEST_VENDOR_INITIAL_BACKOFF_S": "0.005",
        "INGEST_VENDOR_MAX_BACKOFF_S": "0.05",
        # Far below the injected hang, far above a normal answer on loopback (milliseconds).
        "INGEST_VENDOR_TIMEOUT_S": "1.0",
        "INGEST_EMBED_BATCH_CHUNKS": "16",  # more embedding requests, so more of them meet a fault
    }.items():
        monkeypatch.setenv(name, value)
    ingest("mode", "set", "real")
    yield


def ingest(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


@pytest.fixture
def run_samples(
    serving: Callable[[ASGIApp], AbstractContextManager[str]], point_real_clients_at: Callable[[str], None]
) -> Callable[[FaultPlan, str], object]:
    """`run_samples(plan, user)`: `ingest add samples` as `user`, with both vendors' stand-ins under
    `plan`; the stand-ins' app."""

    def run(plan: FaultPlan, user: str) -> object:
        app = server.create_app(plan)
        with serving(app) as base:
            point_real_clients_at(base)
            assert "6 completed" in ingest("add", str(SAMPLES), "--user", user)
        return app

    return run


def chunks_by_file(conninfo: str, user: str) -> dict[str, list[bytes]]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT d.sha256, c.text_hash FROM chunks c JOIN documents d ON d.id = c.document_id"
            " JOIN users u ON u.id = d.owner_id WHERE u.name = %s ORDER BY d.sha256, c.ordinal",
            (user,),
        ).fetchall()
    found: dict[str, list[bytes]] = {}
    for sha, text_hash in rows:
        found.setdefault(sha, []).append(text_hash)
    return found


def vectors_per_chunk(conninfo: str, user: str) -> tuple[list[UUID], int, int, int]:
    """The user's documents, and their chunks, vector rows and distinct vectored chunks."""
    with psycopg.connect(conninfo) as conn:
        docs = [
            row[0]
            for row in conn.execute(
                "SELECT d.id FROM documents d JOIN users u ON u.id = d.owner_id WHERE u.name = %s", (user,)
            )
        ]
        tables = [row[0] for row in conn.execute("SELECT table_name FROM embedding_spaces")]
        every_vector = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT chunk_id FROM {}").format(sql.Identifier(t)) for t in tables
        )
        chunks, rows, distinct = conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM chunks WHERE document_id = ANY(%(docs)s)),"
                " count(v.chunk_id), count(DISTINCT v.chunk_id)"
                " FROM ({}) v JOIN chunks c ON c.id = v.chunk_id WHERE c.document_id = ANY(%(docs)s)"
            ).format(every_vector),
            {"docs": docs},
        ).fetchone()
    return docs, chunks, rows, distinct


def test_every_document_completes_through_30_percent_faults_and_every_billed_call_is_recorded_once(
    real_mode: None,
    settings: Settings,
    run_samples: Callable[[FaultPlan, str], object],
    openai_records: Callable[[object], Ledger],
    llamaparse_records: Callable[[object], StandinState],
    assert_ledger_is_what_the_standins_billed: Callable[..., None],
) -> None:
    conninfo = settings.database_url or ""
    # The faulty run first: every text goes to the vendors through the faults. The fault-free run only
    # gives the expected chunks; an embedding cache may serve its vectors from the first run.
    storm = run_samples(STORM, "storm")
    run_samples(FaultPlan(), "calm")
    assert "0 problems" in ingest("verify")

    # The faults happened, of every kind, on both stand-ins.
    openai_faults = storm.state.openai.state.injector.stats  # type: ignore[attr-defined]
    llamaparse_faults = llamaparse_records(storm).injector.stats
    assert openai_faults.failed and llamaparse_faults.failed
    assert set(openai_faults.by_kind | llamaparse_faults.by_kind) == {"rate_429", "rate_500", "rate_timeout"}
    # Failed requests billed nothing at the stand-ins: they served each call the clients count as made.
    assert openai_faults.served == openai_records(storm).requests

    # The same chunks, document for document, as without faults; each stored once, with one vector.
    calm, stormy = chunks_by_file(conninfo, "calm"), chunks_by_file(conninfo, "storm")
    assert stormy == calm and len(stormy) == 6
    docs, chunks, vector_rows, vectored = vectors_per_chunk(conninfo, "storm")
    assert chunks == sum(map(len, stormy.values())) == vector_rows == vectored

    # The requests the OpenAI client stopped waiting for (the injected hangs) may have been billed by a
    # real vendor: they are charged too, so the ledger reads at least the bill.
    assert_ledger_is_what_the_standins_billed(
        conninfo,
        storm,
        docs,
        price_table(settings),
        settings.openai_embedding_model,
        unconfirmed_requests=openai_faults.by_kind["rate_timeout"],
    )
