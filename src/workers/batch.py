"""Small documents together: one message takes many documents through parse, chunk and embed.

Every document keeps its own job, parse lease and verdict in PostgreSQL, as when it travels alone
(workers.parse_stage, workers.embed_stage). What a batch shares is the message, the transactions (one
claims every job, one stores every document's chunks: workers.batch_parse), the embedding call (the texts
of all its documents; the client splits them only at the API's per-request limits) and the transaction
that stores their vectors, charges them and completes their jobs (workers.batch_embed). So:
- a redelivered batch redoes only what is not committed: a document already chunked is not parsed again
  and goes on as its own message (the per-document path, whose embed leases keep the sweep's re-send of
  the same document from calling the vendor a second time); only chunks without a vector are embedded;
- a permanent error fails its document alone, with its reason; any other error sends that document its
  own `parse_document` (the per-document path and its retries), which resumes where it stopped;
- a real call reserves each document's share, in order: when the budget refuses one, it and the rest are
  deferred, and those already reserved go on, so a budget is never overshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import structlog

from ingest.leases import PARSE, Lease
from workers import batch_parse, batch_route, leasing, messages, upgrade
from workers.batch_embed import embed_batch
from workers.broker import PERMANENT_ERRORS
from workers.deleted import stops_if_deleted
from workers.leasing import LeaseLost
from workers.metering import JobDeferred, defer_job
from workers.parse_stage import parse_stage
from workers.runtime import Runtime
from workers.states import fail_job, one_line

log = structlog.get_logger(__name__)


def run_batch(rt: Runtime, job_ids: Sequence[UUID]) -> list[UUID]:
    """Take the jobs through parse, chunk and embed together; return the jobs this batch completed."""
    if rt.router.parses_remotely():
        # The parser turned to the vendor since admission: each parse would wait on LlamaParse in turn,
        # under one message's time limit, holding the other documents back. Each goes alone.
        for job_id in job_ids:
            messages.actor(messages.PARSE_DOCUMENT).send(str(job_id))
        return []
    held = leasing.take_many(rt, job_ids, PARSE)
    for job_id in set(job_ids) - set(held):
        log.info(
            "stage_skipped", job_id=str(job_id), unit=PARSE, reason="another live worker holds its lease"
        )

    def hand_off(job_id: UUID, failed: BaseException | None) -> None:
        _hand_off(rt, held, job_id, failed)

    try:
        parsed = _parsed_all(rt, job_ids, held)
        try:
            done = embed_batch(rt, parsed, hand_off) if parsed else []
        except Exception as failed:  # noqa: BLE001  (a deadlock victim, the database away: each goes alone)
            for lease in parsed:
                _hand_off(rt, held, lease.job_id, failed)
            done = []
    finally:
        leasing.release(rt, *held.values())
    if done:
        leasing.drop_queued(rt, *done)
    upgrade.after_jobs(rt, done)
    return done


def _hand_off(rt: Runtime, held: dict[UUID, Lease], job_id: UUID, failed: BaseException | None) -> None:
    """The document goes on alone: its lease is given back and its own message sent, whose retries and
    fallbacks (and the Batch API route) are the per-document path's."""
    lease = held.pop(job_id, None)
    if lease is not None:
        leasing.release(rt, lease)
    if failed is not None:
        log.warning("batch_document_handed_off", job_id=str(job_id), error=one_line(failed))
    messages.actor(messages.PARSE_DOCUMENT).send(str(job_id))


def _parsed_all(rt: Runtime, job_ids: Sequence[UUID], held: dict[UUID, Lease]) -> list[Lease]:
    """Parse and chunk the batch's documents; the leases of those with chunks to embed here."""
    parser = batch_parse.mock_parser(rt)
    if parser is None:  # a parse with money or a wait: each document through the per-document stage
        return [lease for job_id in job_ids if (lease := _parsed(rt, job_id, held)) is not None]
    try:
        out = batch_parse.parse_batch(rt, parser, dict(held))
    except Exception as failed:  # noqa: BLE001  (a deadlock victim, the database away: each goes alone)
        for job_id in list(held):
            _hand_off(rt, held, job_id, failed)
        return []
    for job_id, error in out.failed.items():
        _alone(rt, held, job_id, error)
    # Chunked by an earlier delivery of this batch, whose worker stopped: the sweep may have re-sent the
    # document alone already, and its embed messages take leases of their own. Embedding it here too
    # would call the vendor twice for the same chunks; it goes the way they do.
    for job_id in out.chunked:
        _hand_off(rt, held, job_id, None)
    routed = batch_route.wanted_among(rt, out.parsed)
    for job_id in routed:  # its embeddings go to the Batch API: its own embed messages do
        _hand_off(rt, held, job_id, None)
    return [held[job_id] for job_id in out.parsed if job_id in held]


def _alone(rt: Runtime, held: dict[UUID, Lease], job_id: UUID, failed: Exception) -> None:
    """A document of the batch failed: it fails alone with its reason, or goes on alone."""
    if isinstance(failed, PERMANENT_ERRORS):
        error = one_line(failed)
        if fail_job(rt, job_id, error):
            log.warning("job_failed", job_id=str(job_id), error=error)
        return
    _hand_off(rt, held, job_id, failed)


def _parsed(rt: Runtime, job_id: UUID, held: dict[UUID, Lease]) -> Lease | None:
    """Parse and chunk one document of the batch under its lease; its lease when it has chunks to embed."""
    lease = held.get(job_id)
    if lease is None:
        return None
    try:
        with stops_if_deleted(rt, job_id):
            if not parse_stage(rt, job_id, lease):
                return None
        if batch_route.wanted(rt, job_id):  # its embeddings go to the Batch API: its own embed messages do
            _hand_off(rt, held, job_id, None)
            return None
        return lease
    except JobDeferred as deferred:
        defer_job(rt, lease, deferred)
    except PERMANENT_ERRORS as permanent:
        error = one_line(permanent)
        if fail_job(rt, job_id, error):
            log.warning("job_failed", job_id=str(job_id), error=error)
    except LeaseLost:
        log.warning("lease_lost", job_id=str(job_id), unit=PARSE)
    except Exception as failed:  # noqa: BLE001  (not this batch's to retry: the document goes alone)
        _hand_off(rt, held, job_id, failed)
    return None
