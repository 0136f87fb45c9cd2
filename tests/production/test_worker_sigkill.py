"""A worker process killed with SIGKILL in the middle of embedding loses nothing: once its heartbeat is
stale, Redis gives its unacknowledged messages to another worker, and the document completes once, with
one copy of each chunk, one vector per chunk and each embedding batch charged once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from production_support import (
    assert_completed_once,
    assert_ledger_covers_the_bill,
    kill_mid_embedding,
    set_modes,
    wait_until,
    worker_group,
    write_documents,
)

from ingest.config import Settings
from mocks.openai_api import Ledger

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def job_of_only_document(conninfo: str) -> tuple[str, str, int | None, str]:
    with psycopg.connect(conninfo) as conn:
        doc_id, job_id, total, status = conn.execute(
            "SELECT d.id, j.id, j.chunks_total, j.status FROM documents d JOIN jobs j ON j.document_id = d.id"
        ).fetchone()
    return str(doc_id), str(job_id), total, status


def test_a_worker_killed_mid_embedding_loses_nothing_and_charges_once(
    standins: object,
    worker_env,
    settings: Settings,
    tmp_path: Path,
    openai_records: Callable[[object], Ledger],
) -> None:
    set_modes(settings, openai="real")
    env = worker_env(EMBED_BATCH_CHUNKS="1")
    conninfo = settings.database_url or ""
    doc = write_documents(tmp_path / "docs", 1, seed=11, words=320)[0]

    def embedding_under_way() -> None:
        _, _, total, status = job_of_only_document(conninfo)
        assert status == "running" and total is not None and total >= 2, (status, total)

    before_kill = kill_mid_embedding(
        env, standins, doc, tmp_path / "first-worker.log", check=embedding_under_way
    )

    with worker_group(env, tmp_path / "second-worker.log") as second:
        wait_until(
            lambda: job_of_only_document(conninfo)[3] == "completed",
            timeout=120,
            what=lambda: (
                f"the document to complete after the kill; second worker:\n{second.output()[-3000:]}"
            ),
        )
        log = second.output()

    doc_id, job_id, total, _ = job_of_only_document(conninfo)
    # The calls the killed worker had in flight were billed: each is charged `unknown` beside the charge
    # of its redo, so the ledger never reads less than the bill.
    assert_completed_once(conninfo, stopped_calls=True)
    assert 1 <= assert_ledger_covers_the_bill(conninfo, openai_records(standins)) <= before_kill
    served = standins.state.openai.state.injector.stats.served  # type: ignore[attr-defined]
    # The call the killed worker was waiting for was made again: the vendor saw more requests than batches.
    assert served > total and before_kill >= 1
    with psycopg.connect(conninfo) as conn:
        attempts = conn.execute("SELECT attempts FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]
    assert attempts == 1  # parsed once: only the embedding messages in flight came back
    # The broker's heartbeat brought the messages back, not the database sweeper (its period is long here).
    assert "jobs_requeued" not in log
