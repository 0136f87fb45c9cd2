"""The resume-or-submit decision for a document's LlamaParse jobs: a pure function over plain data."""

from __future__ import annotations

import pytest

from ingest.errors import VendorError
from router.backoff import RetriesExhausted
from router.llamaparse.resume import JobAttempt, Step, gave_up, next_step, resumed_jobs


@pytest.mark.parametrize(
    ("jobs", "status", "step"),
    [
        (0, None, Step.SUBMIT),  # nothing made yet
        (1, "PENDING", Step.WAIT),
        (2, "RUNNING", Step.WAIT),  # a pending job is waited for, never doubled
        (1, "COMPLETED", Step.FETCH),  # already paid for: read it
        (2, "COMPLETED", Step.FETCH),
        (1, "FAILED", Step.SUBMIT),  # confirmed failed: the one resubmission
        (1, "CANCELLED", Step.SUBMIT),
        (1, None, Step.SUBMIT),  # unknown to the API
        (2, "FAILED", Step.GIVE_UP),  # never a third job in a round
        (2, "CANCELLED", Step.GIVE_UP),
        (2, None, Step.GIVE_UP),
    ],
)
def test_next_step(jobs: int, status: str | None, step: Step) -> None:
    assert next_step(jobs, status) is step


@pytest.mark.parametrize(
    ("recorded", "status", "jobs"),
    [
        (1, "PENDING", 1),
        (2, "RUNNING", 2),
        (1, "COMPLETED", 1),
        (2, "FAILED", 2),  # a failed file keeps its count: the round's one resubmission was spent
        (1, "FAILED", 1),
        (0, "FAILED", 0),  # `ingest retry` reset the count: a failed job is resubmitted afresh
        (2, "CANCELLED", 0),  # cancelled (overdue, never billed): the retried stage starts a new round
        (2, None, 0),  # the API forgot the job: a new round
    ],
)
def test_resumed_jobs(recorded: int, status: str | None, jobs: int) -> None:
    assert resumed_jobs(recorded, status) == jobs


def test_a_redelivery_resumes_rather_than_submits() -> None:
    """Through both functions, as a redelivered stage uses them: what it does with its recorded job."""

    def resumed(recorded: int, status: str | None) -> Step:
        return next_step(resumed_jobs(recorded, status), status)

    assert resumed(1, "RUNNING") is Step.WAIT
    assert resumed(2, "COMPLETED") is Step.FETCH
    assert resumed(1, "FAILED") is Step.SUBMIT
    assert resumed(2, "FAILED") is Step.GIVE_UP
    assert resumed(2, "CANCELLED") is Step.SUBMIT and resumed(2, None) is Step.SUBMIT


def test_giving_up_fails_the_file_or_retries_the_stage() -> None:
    failed = gave_up([JobAttempt("j1", "FAILED", "boom"), JobAttempt("j2", "FAILED")], 60)
    assert isinstance(failed, VendorError) and "j1 ended FAILED (boom); j2 ended FAILED" in str(failed)
    slow = gave_up([JobAttempt("j1", "CANCELLED"), JobAttempt("j2", "CANCELLED")], 60)
    assert isinstance(slow, RetriesExhausted)
