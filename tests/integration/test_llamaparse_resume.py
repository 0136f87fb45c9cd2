"""A parse stage delivered again after its LlamaParse job was made resumes that job: the real client and
SDK against the stand-in over loopback, through `parse_stage` with its database and ledger.

Each test interrupts a first delivery after the vendor job exists (the worker "dies" the moment the job
is recorded, or while it waits), then delivers the stage again, and holds the stand-in to one job per
document (the vendor bills every job that completes) and our ledger to one charge, the job's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp

from costs import ledger
from ingest.config import Settings
from ingest.parsed import Submission
from ingest.services.submit import retry_job, submit_file
from ingest.store import jobs
from ingest.store.users import ensure_user
from mocks import server
from mocks.faults import FaultPlan
from mocks.llamaparse_api import LlamaParseFaults
from mocks.llamaparse_jobs import StandinState
from router.backoff import Cooldown, LocalCooldownBackend, RetryPolicy
from router.decide import Mode
from router.llamaparse.client import LlamaParseParser
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime
from workers.states import fail_job

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PDF = SAMPLES / "carroll-wonderland.pdf"
pytestmark = pytest.mark.usefixtures("no_fault_env")


class Killed(Exception):
    """The worker stopping mid-stage (SIGKILL, time limit, a lost connection), as the stage sees it."""


@pytest.fixture
def real_parsing(
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
    llamaparse_records: Callable[[object], StandinState],
) -> Callable[..., AbstractContextManager[tuple[Runtime, object]]]:
    """`with real_parsing(settings, faults, waiter=None) as (rt, app):` a runtime whose parses are real
    (LlamaParse against the stand-in, polling fast); embeddings mock."""

    @contextmanager
    def start(
        settings: Settings, faults: LlamaParseFaults, waiter: Callable[[str, float], bool] | None = None
    ) -> Iterator[tuple[Runtime, object]]:
        app = server.create_app(FaultPlan())  # both vendors on one port, as `ingest mocks serve`
        llamaparse_records(app).faults = faults
        with serving(app) as base:
            real = settings.model_copy(
                update={"llama_cloud_api_key": SecretStr("llx-standin-key"), "llama_cloud_base_url": base}
            )
            with Runtime.open(real) as rt:
                rt.router._real_parser = LlamaParseParser(
                    real,
                    waiter=waiter,
                    policy=RetryPolicy(
                        max_attempts=5, initial_backoff_s=0.005, max_backoff_s=0.02, timeout_s=10.0
                    ),
                    cooldown=Cooldown(LocalCooldownBackend()),
                    poll_interval_s=0.01,
                    max_poll_interval_s=0.05,
                )
                rt.router.modes.set(Mode.REAL, ("llamaparse",))
                with rt.pool.connection() as conn:
                    ledger.set_limit(conn, "all", Decimal(10))
                yield rt, app

    return start


def submit(rt: Runtime) -> tuple[UUID, UUID]:
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    sub = submit_file(rt, PDF, user=user)
    return sub.document_id, sub.job_id


def die_once_recorded(monkeypatch: pytest.MonkeyPatch) -> list[Submission]:
    """The first vendor job recorded is followed at once by the worker's death; later ones go through."""
    real = jobs.record_vendor_submission
    recorded: list[Submission] = []

    def record(conn: object, job_id: UUID, submission: Submission) -> bool:
        done = real(conn, job_id, submission)  # type: ignore[arg-type]
        recorded.append(submission)
        if len(recorded) == 1:
            conn.commit()  # type: ignore[attr-defined]  (durable before the death, as in production)
            raise Killed("SIGKILL")
        return done

    monkeypatch.setattr(jobs, "record_vendor_submission", record)
    return recorded


def run_to_completion(rt: Runtime, job_id: UUID) -> None:
    for batch in parse_stage(rt, job_id):
        embed_stage(rt, job_id, batch.first, batch.last)


@pytest.fixture
def assert_completed_once(
    assert_ledger_is_what_the_standins_billed: Callable[..., None],
) -> Callable[..., None]:
    """`assert_completed_once(rt, app, document_id, job_id)`: parsed once, charged once, as billed."""

    def check(rt: Runtime, app: object, document_id: UUID, job_id: UUID) -> None:
        with rt.pool.connection() as conn:
            job = jobs.get(conn, job_id)
            assert job is not None and job.status == "completed"
            assert jobs.vendor_submission(conn, job_id) is None  # parsed for good: nothing left to resume
            parses = conn.execute(
                "SELECT count(*) FROM cost_entries WHERE service = 'llamaparse' AND state = 'charged'"
                " AND document_id = %s",
                (document_id,),
            ).fetchone()[0]
        assert parses == 1
        assert_ledger_is_what_the_standins_billed(
            rt.settings.database_url or "",
            app,
            [document_id],
            rt.router.meter.prices,
            rt.settings.openai_embedding_model,
        )

    return check


def test_a_stage_killed_once_its_job_exists_resumes_that_job(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    real_parsing: Callable[..., AbstractContextManager[tuple[Runtime, object]]],
    llamaparse_records: Callable[[object], StandinState],
    assert_completed_once: Callable[..., None],
) -> None:
    recorded = die_once_recorded(monkeypatch)
    with real_parsing(settings, LlamaParseFaults(job_delay_s=0.05)) as (rt, app):
        document_id, job_id = submit(rt)
        with pytest.raises(Killed):
            parse_stage(rt, job_id)
        with rt.pool.connection() as conn:
            assert jobs.vendor_submission(conn, job_id) == recorded[0]  # durable before the death

        run_to_completion(rt, job_id)  # the broker delivers the stage again

        standin = llamaparse_records(app)
        assert list(standin.jobs) == [recorded[0].job_id] and len(standin.files) == 1  # no new job, no upload
        assert len(recorded) == 1
        assert_completed_once(rt, app, document_id, job_id)


def test_a_stage_stopped_while_waiting_resumes_the_pending_job(
    settings: Settings,
    real_parsing: Callable[..., AbstractContextManager[tuple[Runtime, object]]],
    llamaparse_records: Callable[[object], StandinState],
    assert_completed_once: Callable[..., None],
) -> None:
    stops = iter([True])

    def waiter(job_id: str, timeout_s: float) -> bool:
        if next(stops, False):
            raise Killed("the stage's time limit")  # mid-wait: the job is still PENDING at the stand-in
        return False

    with real_parsing(settings, LlamaParseFaults(job_delay_s=0.3), waiter=waiter) as (rt, app):
        document_id, job_id = submit(rt)
        with pytest.raises(Killed):
            parse_stage(rt, job_id)
        (only,) = llamaparse_records(app).jobs.values()
        assert only.status == "PENDING"

        run_to_completion(rt, job_id)

        assert list(llamaparse_records(app).jobs) == [only.id] and only.status == "COMPLETED"
        assert_completed_once(rt, app, document_id, job_id)


def test_a_recorded_job_that_failed_is_resubmitted_once(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    real_parsing: Callable[..., AbstractContextManager[tuple[Runtime, object]]],
    llamaparse_records: Callable[[object], StandinState],
    assert_completed_once: Callable[..., None],
) -> None:
    recorded = die_once_recorded(monkeypatch)
    with real_parsing(settings, LlamaParseFaults(job_delay_s=0.02, fail_first=1)) as (rt, app):
        document_id, job_id = submit(rt)
        with pytest.raises(Killed):
            parse_stage(rt, job_id)

        run_to_completion(rt, job_id)

        standin = llamaparse_records(app)
        assert [job.status for job in standin.jobs.values()] == ["FAILED", "COMPLETED"]
        assert len(standin.files) == 1  # the recorded upload was parsed again
        assert [s.jobs for s in recorded] == [1, 2]
        assert_completed_once(rt, app, document_id, job_id)


def test_a_failed_job_retried_by_the_operator_reuses_its_completed_vendor_job(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    real_parsing: Callable[..., AbstractContextManager[tuple[Runtime, object]]],
    llamaparse_records: Callable[[object], StandinState],
    assert_completed_once: Callable[..., None],
) -> None:
    die_once_recorded(monkeypatch)
    with real_parsing(settings, LlamaParseFaults(job_delay_s=0.02)) as (rt, app):
        document_id, job_id = submit(rt)
        with pytest.raises(Killed):
            parse_stage(rt, job_id)
        # The job fails meanwhile (its deliveries spent, say): `ingest retry` puts it back in line.
        assert fail_job(rt, job_id, "gave up after 6 deliveries of one message")
        retry_job(rt, job_id)

        run_to_completion(rt, job_id)

        assert len(llamaparse_records(app).jobs) == 1
        assert_completed_once(rt, app, document_id, job_id)
