"""A batch of small documents whose worker is killed with SIGKILL while the batch's shared embedding request
is in flight: Redis gives the batch message to another worker, which redoes only what was not committed.
Every document completes once, with one copy of each chunk and vector and one charge per billable call."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from production_support import (
    WorkerGroup,
    assert_completed_once,
    run_cli,
    set_modes,
    wait_until,
    worker_group,
    write_documents,
)

from ingest.config import Settings
from mocks.faults import FaultPlan

pytestmark = [pytest.mark.redis, pytest.mark.slow]
DOCUMENTS = 8


def statuses(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())


def test_a_batch_redelivered_after_its_worker_is_killed_stores_and_charges_once(
    standins: object, worker_env, settings: Settings, tmp_path: Path
) -> None:
    set_modes(settings, openai="real")
    conninfo = settings.database_url or ""
    env = worker_env()
    injector = standins.state.openai.state.injector  # type: ignore[attr-defined]
    injector.plan = FaultPlan(latency_ms=3000)  # a wide window to kill the worker inside the request
    folder = tmp_path / "docs"
    write_documents(folder, DOCUMENTS, seed=23, words=80)
    assert f"{DOCUMENTS} queued" in run_cli(env, "add", "--no-wait", str(folder)).stdout

    first = WorkerGroup(env, tmp_path / "first-worker.log")
    try:
        first.wait_ready()
        wait_until(lambda: injector.stats.served >= 1, timeout=90, what="the batch's embedding request")
        # Parsed and chunked, nothing stored yet: the kill lands mid-batch.
        assert statuses(conninfo) == {"running": DOCUMENTS}
    finally:
        first.kill()
    assert injector.stats.served == 1  # one request carried every document's chunks

    injector.plan = FaultPlan()
    with worker_group(env, tmp_path / "second-worker.log") as second:
        wait_until(
            lambda: statuses(conninfo) == {"completed": DOCUMENTS},
            timeout=120,
            what=lambda: f"the batch to complete after the kill; second worker:\n{second.output()[-3000:]}",
        )
        log = second.output()

    assert_completed_once(conninfo)
    with psycopg.connect(conninfo) as conn:
        deliveries = conn.execute("SELECT max(deliveries) FROM message_deliveries").fetchone()[0]
    # Parsed once per document (assert_completed_once: one parse charge each) although claimed again: by
    # the batch message the broker gave back, and possibly by the new worker's first sweep, which re-sends
    # each lapsed document alone; whichever holds a document's lease does its work, the other nothing.
    assert deliveries == 2  # the batch message itself came back
    assert injector.stats.served >= 2  # the killed call was made again
    assert '"batch_split"' not in log
