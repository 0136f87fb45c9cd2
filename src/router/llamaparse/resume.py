"""What to do next with a document's LlamaParse job: pure functions over plain data.

LlamaParse bills every job that completes, whatever our ledger says. So the parse of a document follows
its jobs, one at a time, through the statuses the API reports, and makes a new one only when none can
serve: when there is none yet, or the last one is confirmed FAILED or CANCELLED, or the API no longer
knows it (404). At most `MAX_JOBS` jobs a round (one resubmission).

The same rule serves a parse that starts fresh and one that resumes the job an earlier delivery of the
stage recorded (the worker was killed while waiting, the stage hit its time limit, a database error came
after the job was made): a pending job is waited for, a completed one is read, neither is paid twice.

Rounds: a job that FAILED counts against the file (two failures fail the document), so a resumed round
keeps its count. A job that was cancelled (overdue: the service's doing, and never billed) or that the
API has forgotten ends the round: the stage's later retry starts a new one, as a retried stage always has.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ingest.errors import VendorError
from router.backoff import RetriesExhausted
from router.vendor_errors import ErrorClass

PENDING = frozenset({"PENDING", "RUNNING"})
FAILED = frozenset({"FAILED", "CANCELLED"})
COMPLETED = "COMPLETED"
MAX_JOBS = 2  # a round's jobs: the first and one resubmission
SERVICE = "llamaparse"


class Step(Enum):
    SUBMIT = "submit"  # no job can serve: make one
    WAIT = "wait"  # the job is pending: wait for it to end
    FETCH = "fetch"  # the job completed: read its result
    GIVE_UP = "give_up"  # the round's jobs are spent and the last did not complete


def next_step(jobs: int, status: str | None, *, max_jobs: int = MAX_JOBS) -> Step:
    """The step after seeing the round's latest job in `status` (None: there is none, or the API does not
    know it), when the round has made `jobs` jobs."""
    if status in PENDING:
        return Step.WAIT
    if status == COMPLETED:
        return Step.FETCH
    return Step.SUBMIT if jobs < max_jobs else Step.GIVE_UP


def resumed_jobs(recorded_jobs: int, status: str | None) -> int:
    """How many jobs the resumed round has made, given the recorded job's status now (None: unknown to the
    API). A cancelled or forgotten job ends its round (the retried stage starts a new one); any other keeps
    the recorded count, so a failed file is still resubmitted at most once. (`ingest retry` records 0: the
    operator's retry starts a new round too, but still resumes a job that did not fail.)"""
    if status is None or status == "CANCELLED":
        return 0
    return recorded_jobs


@dataclass(frozen=True, slots=True)
class JobAttempt:
    """One parse job submitted for the document, as last seen."""

    job_id: str
    status: str
    error: str | None = None


def described(attempt: JobAttempt) -> str:
    return f"{attempt.job_id} ended {attempt.status}" + (f" ({attempt.error})" if attempt.error else "")


def gave_up(attempts: list[JobAttempt], deadline_s: float) -> Exception:
    """What a round whose jobs are spent raises, by how its last job ended."""
    tried = "; ".join(described(attempt) for attempt in attempts)
    if attempts[-1].status == "FAILED":
        # The vendor itself failed the document twice: most likely the file, so the job fails.
        return VendorError(f"{SERVICE}: the document failed to parse twice: {tried}")
    # Cancelled (by us, overdue): the service is slow, not the file bad; the stage is retried later.
    return RetriesExhausted(
        SERVICE, ErrorClass.TRANSIENT, len(attempts), f"jobs not done within {deadline_s:.0f}s: {tried}"
    )
