"""The decisions of a reembed run on the Batch API (workers.reembed_batches): what its step does once its
inputs are queued, and where inputs a batch did not embed go."""

from __future__ import annotations

from uuid import UUID

import pytest

from ingest.store.embedding_batches import Item
from workers.batch_answers import share_of
from workers.reembed_batches import missed_action, reservation_key, step_action


@pytest.mark.parametrize(
    ("missing", "outstanding", "action"),
    [
        (10, 10, "wait"),  # inputs out: wait for their batches
        (0, 3, "wait"),  # every chunk has its vector, yet inputs are out: their batch still ends first
        (0, 0, "switch"),  # nothing missing, nothing out: verify and switch
        (4, 0, "wait"),  # missing, no input of the run for it (another batch brings its text): look again
    ],
)
def test_step_action(missing: int, outstanding: int, action: str) -> None:
    assert step_action(missing=missing, outstanding=outstanding) == action


@pytest.mark.parametrize(
    ("fallback", "attempts", "action"),
    [
        ("sync", 1, "sync"),
        ("sync", 9, "sync"),  # sync never waits for another batch, whatever the attempts
        ("batch", 1, "requeue"),
        ("batch", 2, "requeue"),
        ("batch", 3, "fail"),  # the third batch that left them was the last allowed
        ("batch", 4, "fail"),
    ],
)
def test_missed_action(fallback: str, attempts: int, action: str) -> None:
    assert missed_action(fallback, attempts, max_attempts=3) == action


def test_a_run_and_a_job_are_separate_shares_of_one_batch() -> None:
    doc = UUID(int=1)
    job_item = Item(
        chunk_id=1, job_id=UUID(int=2), run_id=None, document_id=doc, text="a", tokens=1, attempts=1
    )
    run_item = Item(chunk_id=2, job_id=None, run_id=7, document_id=doc, text="b", tokens=1, attempts=1)
    assert share_of(job_item) == ("job", UUID(int=2))
    assert share_of(run_item) == ("run", 7)
    # Under the run's ledger prefix: `ingest reembed --status` counts what its batches were charged.
    assert reservation_key(7, UUID(int=3)).startswith("reembed:7:")
