"""Redis restarted in the middle of a run, empty (no persistence): no accepted document is lost. The
database, not the broker, says which jobs are owed progress: the sweeper sends their messages again once
they have not moved for `requeue_idle_s`, and every document completes once."""

from __future__ import annotations

from pathlib import Path

import pytest
from production_support import (
    PrivateRedis,
    assert_completed_once,
    job_states,
    run_cli,
    set_modes,
    wait_until,
    worker_group,
    write_documents,
)

from ingest.config import Settings
from mocks.faults import FaultPlan

pytestmark = [pytest.mark.redis, pytest.mark.slow]
DOCUMENTS = 24


def test_no_accepted_document_is_lost_when_redis_restarts_empty(
    standins: object, worker_env, private_redis: PrivateRedis, settings: Settings, tmp_path: Path
) -> None:
    set_modes(settings, openai="real")
    # Each embedding takes 0.4 s, so the run is still under way when Redis goes.
    standins.state.openai.state.injector.plan = FaultPlan(latency_ms=400)  # type: ignore[attr-defined]
    # One document a message and a slot: most messages wait in Redis when it goes (batches of small
    # documents would have carried them all to the worker already, and nothing would be lost).
    env = worker_env(
        JOB_TIME_LIMIT_S="8", REQUEUE_IDLE_S="10", DOCUMENT_BATCH_TOKENS="0", BATCH_DOCUMENTS_PER_SLOT="1"
    ) | {"REDIS_URL": private_redis.url}
    conninfo = settings.database_url or ""
    folder = tmp_path / "docs"
    write_documents(folder, DOCUMENTS, seed=21)

    with worker_group(env, tmp_path / "worker.log") as worker:
        assert "queued" in run_cli(env, "add", "--no-wait", str(folder)).stdout
        wait_until(
            lambda: job_states(conninfo).get("completed", 0) >= 3, timeout=90, what="a first few documents"
        )
        private_redis.restart()
        states = job_states(conninfo)
        # What the restart took away: messages of jobs still queued or running (the database keeps them).
        assert states.get("queued", 0) + states.get("running", 0) >= 5, states
        wait_until(
            lambda: job_states(conninfo).get("completed", 0) == DOCUMENTS,
            timeout=150,
            what=lambda: (
                f"every document after the restart ({job_states(conninfo)}); worker:\n{worker.output()[-3000:]}"
            ),
        )
        log = worker.output()

    assert_completed_once(conninfo)
    assert '"jobs_requeued"' in log  # the sweeper, not luck, brought them back
