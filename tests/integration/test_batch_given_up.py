"""A batch message given up on (its retries spent on something no document caused, such as the message's
time limit) hands its documents on: each goes on with its own message, and none waits for the sweep's
lost-message pass (minutes) or is failed for the batch's fault."""

from __future__ import annotations

from pathlib import Path

import dramatiq
import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded

from ingest.config import Settings
from ingest.services.submit import Submitted, submit_files
from ingest.store.users import ensure_user
from tests.integration.test_batches import wait_for, write_small
from workers import batch, messages
from workers.inprocess import serving
from workers.runtime import Runtime


def test_a_batch_that_ran_out_of_time_hands_its_documents_on(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.job_max_retries = 0  # the batch's first failure is its last
    settings.requeue_idle_s = 3600  # the sweep would not re-send them within the test
    paths = write_small(tmp_path / "notes", 5)
    embedded = batch._embedded
    struck: list[int] = []

    def out_of_time(*args: object, **kwargs: object) -> object:
        if not struck:  # the batch's own attempt; the documents' own messages do not pass here
            struck.append(1)
            raise TimeLimitExceeded()
        return embedded(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "_embedded", out_of_time)
    with Runtime.open(settings) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")
        submitted = [s for s in submit_files(rt, paths, user=user) if isinstance(s, Submitted)]
        message = dramatiq.Message(
            queue_name=messages.INGEST_QUEUE,
            actor_name=messages.INGEST_BATCH,
            args=([str(s.job_id) for s in submitted],),
            kwargs={},
            options={},
        )
        with serving(rt, threads=2):  # a fresh in-process broker: only this message is on it
            messages.started_broker().enqueue(message)
            wait_for(rt, lambda s: s == "completed", len(paths), timeout=60)
        with rt.pool.connection() as conn:
            errors = [e for (e,) in conn.execute("SELECT error FROM jobs WHERE error IS NOT NULL")]
            leases = conn.execute("SELECT count(*) FROM job_leases").fetchone()
    assert struck == [1]
    assert errors == []
    assert leases == (0,)
