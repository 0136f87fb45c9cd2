"""Money around a stage's billable call: route it, hold its estimate, make it, and defer the job when
the budget or a service cannot serve it now. Shared by the per-document stages and the batch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

import structlog

from costs.meter import BudgetExhausted, Charge, Meter, Reservation
from ingest.errors import ServiceUnavailable
from ingest.leases import Lease
from ingest.store import documents, jobs
from router.decide import Choice, Decision
from router.factory import Client, Routed
from workers import billing, leasing, messages
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# How long a job waits before trying again when a service in real mode cannot serve it now.
DEFER_RETRY_S = 60


class JobDeferred(Exception):
    def __init__(self, reason: str, delay_s: int = DEFER_RETRY_S) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


def defer_job(rt: Runtime, lease: Lease, deferred: JobDeferred) -> None:
    """Mark the job deferred (its stage cannot be served now) and send its delayed `parse_document`."""
    with rt.pool.connection() as conn, conn.transaction():
        job = jobs.lock(conn, lease.job_id)  # document, then job, then (fence) lease: a delete's order
        if job is None or job.final:
            return
        leasing.fence(conn, lease)
        jobs.defer(conn, job.id, str(deferred), deferred.delay_s)
        documents.set_status(conn, job.document_id, "deferred")
    messages.actor(messages.PARSE_DOCUMENT).send_with_options(
        args=(str(lease.job_id),), delay=deferred.delay_s * 1000
    )
    log.info("job_deferred", job_id=str(lease.job_id), reason=str(deferred), delay_s=deferred.delay_s)


def served(routed: Routed[Client]) -> Client:
    decision: Decision = routed.decision
    if decision.choice is Choice.DEFER:
        raise JobDeferred(decision.reason)
    if decision.choice is Choice.FAIL or routed.client is None:
        raise ServiceUnavailable(decision.reason)
    return routed.client


def metered(
    rt: Runtime,
    service: str,
    route: Callable[..., Routed[Client]],
    estimate: Charge,
    *,
    key: str,
    stage: str,
    document_id: UUID | None,
    job_id: UUID | None,
    holder: str | None = None,
    resumes: bool = False,
) -> tuple[Client, Reservation]:
    """Route one billable call and hold its estimate before anyone is called (under the job lease
    `holder`, when the call is a stage's; `resumes`: it resumes a vendor job an earlier delivery started).

    A real call reserves against today's budget, a mock call records its shadow cost. When the budget
    cannot take the estimate, hybrid falls back to mock and real defers the job to the next budget day.
    """
    meter: Meter = rt.router.meter
    reserve = functools.partial(
        meter.reserve,
        key=key,
        service=service,
        stage=stage,
        estimate=estimate,
        document_id=document_id,
        job_id=job_id,
        holder=holder,
        resumes=resumes,
    )
    routed = route()
    if routed.decision.choice is Choice.DEFER and not meter.budget_ok(service):
        raise JobDeferred(routed.decision.reason, delay_s=meter.seconds_to_next_day())
    client = served(routed)
    try:
        return client, reserve(simulated=routed.decision.choice is Choice.MOCK)
    except BudgetExhausted as refused:
        routed = route(budget_ok=False)
        if routed.decision.choice is Choice.DEFER:
            raise JobDeferred(str(refused), delay_s=refused.delay_s) from None
        return served(routed), reserve(simulated=True)


Result = TypeVar("Result")


def billed(meter: Meter, held: Reservation, call: Callable[[], Result]) -> Result:
    """Make the call. If it fails, the reservation goes back, unless the vendor may have billed it: then it
    is charged as `unknown` (workers.billing)."""
    try:
        return call()
    except BaseException as failed:
        billing.after_failure(meter, held, failed)
        raise
