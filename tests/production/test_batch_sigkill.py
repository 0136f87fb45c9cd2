"""A batch of small documents whose worker is killed with SIGKILL while the batch's shared embedding request
is in flight: Redis gives the batch message to another worker, which redoes only what was not committed.
Every document completes once, with one copy of each chunk and vector and one charge per billable call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from production_support import (
    assert_completed_once,
    assert_ledger_covers_the_bill,
    job_states,
    kill_mid_embedding,
    max_deliveries,
    set_modes,
    wait_until,
    worker_group,
    write_documents,
)

from ingest.config import Settings
from mocks.faults import FaultPlan
from mocks.openai_api import Ledger

pytestmark = [pytest.mark.redis, pytest.mark.slow]
DOCUMENTS = 8


def test_a_batch_redelivered_after_its_worker_is_killed_stores_and_charges_once(
    standins: object,
    worker_env,
    settings: Settings,
    tmp_path: Path,
    openai_records: Callable[[object], Ledger],
) -> None:
    set_modes(settings, openai="real")
    conninfo = settings.database_url or ""
    env = worker_env()
    injector = standins.state.openai.state.injector  # type: ignore[attr-defined]
    folder = tmp_path / "docs"
    write_documents(folder, DOCUMENTS, seed=23, words=80)

    def parsed_and_chunked_nothing_stored() -> None:  # the kill lands mid-batch
        assert job_states(conninfo) == {"running": DOCUMENTS}

    kill_mid_embedding(
        env, standins, folder, tmp_path / "first-worker.log", check=parsed_and_chunked_nothing_stored
    )
    assert injector.stats.served == 1  # one request carried every document's chunks

    injector.plan = FaultPlan()
    with worker_group(env, tmp_path / "second-worker.log") as second:
        wait_until(
            lambda: job_states(conninfo) == {"completed": DOCUMENTS},
            timeout=120,
            what=lambda: f"the batch to complete after the kill; second worker:\n{second.output()[-3000:]}",
        )
        log = second.output()

    # The killed call reached the stand-in, which billed it: each document's share of it is charged
    # `unknown` (the ledger never reads less than the bill), and every chunk's tokens are charged once.
    assert_completed_once(conninfo, stopped_calls=True)
    with psycopg.connect(conninfo) as conn:
        ledger = conn.execute(
            "SELECT key, state, holder, usage->>'tokens' FROM cost_entries WHERE service = 'openai' ORDER BY id"
        ).fetchall()
    assert assert_ledger_covers_the_bill(conninfo, openai_records(standins)) == DOCUMENTS, ledger
    # Parsed once per document (assert_completed_once: one parse charge each) although claimed again: by
    # the new worker's first sweep, which re-sends each lapsed document alone, and by the batch message the
    # broker gives back (which hands the documents it finds chunked to their own messages); whichever holds
    # a document's lease does its work, the other nothing. The sweep may finish them all before the broker
    # gives the batch back: at most a second delivery, never a third.
    assert max_deliveries(conninfo) in (1, 2)
    assert injector.stats.served >= 2  # the killed call was made again
    assert '"batch_split"' not in log
