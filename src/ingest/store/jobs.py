"""Jobs: the state of one document's trip through the pipeline, the source of truth for every worker."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from ingest.db.rows import one, scalar
from ingest.parsed import Submission

COLUMNS = (
    "id, document_id, status, stage, attempts, error, chunks_total, chunks_done, deferred_until,"
    " claimed_by, created_at, updated_at, started_at, finished_at"
)
FINAL = ("completed", "failed")
# Where a job rests until something changes: final, or deferred to a later time.
SETTLED = (*FINAL, "deferred")


@dataclass(slots=True)
class Job:
    id: UUID
    document_id: UUID
    status: str
    stage: str
    attempts: int
    error: str | None
    chunks_total: int | None
    chunks_done: int
    deferred_until: datetime | None
    claimed_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def progress(self) -> float:
        if self.status == "completed":
            return 1.0
        if not self.chunks_total:
            return 0.0
        # Parsing is a tenth of the way; embedding and storing the rest.
        return round(0.1 + 0.9 * self.chunks_done / self.chunks_total, 4)

    @property
    def final(self) -> bool:
        return self.status in FINAL


def _cur(conn: psycopg.Connection) -> psycopg.Cursor[Job]:
    return conn.cursor(row_factory=class_row(Job))


def create(conn: psycopg.Connection, document_id: UUID) -> Job:
    return one(
        _cur(conn).execute(f"INSERT INTO jobs (document_id) VALUES (%s) RETURNING {COLUMNS}", (document_id,))
    )


def create_many(conn: psycopg.Connection, document_ids: Sequence[UUID]) -> dict[UUID, Job]:
    """`create` for many documents in one statement: document -> its new job."""
    rows = (
        _cur(conn)
        .execute(
            f"INSERT INTO jobs (document_id) SELECT unnest(%s::uuid[]) RETURNING {COLUMNS}",
            (list(document_ids),),
        )
        .fetchall()
    )
    return {job.document_id: job for job in rows}


def latest_for_documents(conn: psycopg.Connection, document_ids: Sequence[UUID]) -> dict[UUID, Job]:
    """`latest_for_document` for many documents in one query."""
    rows = (
        _cur(conn)
        .execute(
            f"SELECT DISTINCT ON (document_id) {COLUMNS} FROM jobs WHERE document_id = ANY(%s)"
            " ORDER BY document_id, created_at DESC",
            (list(document_ids),),
        )
        .fetchall()
    )
    return {job.document_id: job for job in rows}


def get(conn: psycopg.Connection, job_id: UUID, *, owner_id: int | None = None) -> Job | None:
    if owner_id is None:
        return _cur(conn).execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return (
        _cur(conn)
        .execute(
            f"SELECT {', '.join('j.' + c.strip() for c in COLUMNS.split(','))} FROM jobs j"
            " JOIN documents d ON d.id = j.document_id WHERE j.id = %s AND d.owner_id = %s",
            (job_id, owner_id),
        )
        .fetchone()
    )


def latest_for_document(conn: psycopg.Connection, document_id: UUID) -> Job | None:
    return (
        _cur(conn)
        .execute(
            f"SELECT {COLUMNS} FROM jobs WHERE document_id = %s ORDER BY created_at DESC LIMIT 1",
            (document_id,),
        )
        .fetchone()
    )


def failed(conn: psycopg.Connection) -> list[Job]:
    """Every failed job, latest first: the jobs whose messages were given up (the dead letters)."""
    return (
        _cur(conn)
        .execute(f"SELECT {COLUMNS} FROM jobs WHERE status = 'failed' ORDER BY finished_at DESC, id")
        .fetchall()
    )


def latest(conn: psycopg.Connection, *, owner_id: int | None = None, limit: int = 20) -> list[Job]:
    where = "" if owner_id is None else "WHERE d.owner_id = %(owner)s"
    return (
        _cur(conn)
        .execute(
            f"SELECT {', '.join('j.' + c.strip() for c in COLUMNS.split(','))} FROM jobs j"
            f" JOIN documents d ON d.id = j.document_id {where} ORDER BY j.created_at DESC LIMIT %(limit)s",
            {"owner": owner_id, "limit": limit},
        )
        .fetchall()
    )


def claim(conn: psycopg.Connection, job_id: UUID, stage: str, *, by: str) -> Job | None:
    """Take the job for `stage` and count the attempt (the caller holds the stage's lease, so no other
    worker runs it now); None when it is final."""
    with conn.transaction():
        current = lock(conn, job_id)
        if current is None or current.final:
            return None
        return (
            _cur(conn)
            .execute(
                f"UPDATE jobs SET status = 'running', stage = %s, attempts = attempts + 1, error = NULL,"
                f" claimed_by = %s, started_at = coalesce(started_at, now()), updated_at = now()"
                f" WHERE id = %s RETURNING {COLUMNS}",
                (stage, by, job_id),
            )
            .fetchone()
        )


def set_stage(
    conn: psycopg.Connection,
    job_id: UUID,
    stage: str,
    *,
    chunks_total: int | None = None,
    clear_vendor_submission: bool = False,
) -> None:
    """Move the job to `stage`. `clear_vendor_submission`: in the same statement, forget the vendor parse
    job recorded on it (the parse is done: its chunks commit in this transaction)."""
    vendor = (
        " vendor_parse_job_id = NULL, vendor_parse_file_id = NULL, vendor_parse_jobs = 0,"
        if clear_vendor_submission
        else ""
    )
    conn.execute(
        f"UPDATE jobs SET stage = %s, chunks_total = coalesce(%s, chunks_total),{vendor} updated_at = now()"
        " WHERE id = %s",
        (stage, chunks_total, job_id),
    )


def vendor_submission(conn: psycopg.Connection, job_id: UUID) -> Submission | None:
    """The vendor parse job an earlier delivery of the parse stage made, if one is recorded."""
    row = conn.execute(
        "SELECT vendor_parse_job_id, vendor_parse_file_id, vendor_parse_jobs FROM jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return Submission(job_id=row[0], file_id=row[1], jobs=row[2])


def record_vendor_submission(conn: psycopg.Connection, job_id: UUID, submission: Submission) -> bool:
    """Record the vendor parse job just made (replacing the one it was resubmitted for); False when the
    job is final by now (nothing left to resume)."""
    row = conn.execute(
        "UPDATE jobs SET vendor_parse_job_id = %s, vendor_parse_file_id = %s, vendor_parse_jobs = %s,"
        " updated_at = now() WHERE id = %s AND status NOT IN ('completed', 'failed') RETURNING id",
        (submission.job_id, submission.file_id, submission.jobs, job_id),
    ).fetchone()
    return row is not None


# Holds the job's document for the transaction (FOR KEY SHARE: other holders and status updates pass). A
# delete locks the document first, then its jobs and chunks through the cascade; a worker's transaction
# that holds the document first takes its locks in that same order, so the two wait for each other, never
# deadlock. After a delete commits, this finds no row.
_HOLD_DOCUMENT = (
    "SELECT j.status FROM jobs j JOIN documents d ON d.id = j.document_id WHERE j.id = %s FOR KEY SHARE OF d"
)


def is_running(conn: psycopg.Connection, job_id: UUID) -> bool:
    """Whether the job is running; also holds its document, so call it first in a transaction that writes
    the job's chunks or vectors."""
    row = conn.execute(_HOLD_DOCUMENT, (job_id,)).fetchone()
    return row is not None and row[0] == "running"


def hold_documents(conn: psycopg.Connection, job_ids: Sequence[UUID]) -> dict[UUID, str]:
    """`is_running` for many jobs in one statement: each existing job's status, its document held (the
    documents in one order, so two transactions that share some lock them alike)."""
    rows = conn.execute(
        "SELECT j.id, j.status FROM jobs j JOIN documents d ON d.id = j.document_id WHERE j.id = ANY(%s)"
        " ORDER BY d.id FOR KEY SHARE OF d",
        (list(job_ids),),
    ).fetchall()
    return {job_id: status for job_id, status in rows}


def lock_many(conn: psycopg.Connection, job_ids: Sequence[UUID]) -> None:
    """Lock the job rows (in one order) for the rest of the transaction; hold their documents first."""
    conn.execute("SELECT id FROM jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (list(job_ids),))


def claim_many(conn: psycopg.Connection, job_ids: Sequence[UUID], *, by: str) -> list[Job]:
    """`claim` for the parse of many jobs whose documents and rows the caller holds (`hold_documents`,
    `lock_many`): the jobs not final, running now; a job already chunked moves straight to `embed`."""
    return (
        _cur(conn)
        .execute(
            f"UPDATE jobs SET status = 'running',"
            f" stage = CASE WHEN chunks_total IS NULL THEN 'parse' ELSE 'embed' END,"
            f" attempts = attempts + 1, error = NULL, claimed_by = %s,"
            f" started_at = coalesce(started_at, now()), updated_at = now()"
            f" WHERE id = ANY(%s) AND status NOT IN ('completed', 'failed') RETURNING {COLUMNS}",
            (by, list(job_ids)),
        )
        .fetchall()
    )


def set_chunked(conn: psycopg.Connection, chunked: Mapping[UUID, int]) -> None:
    """Many jobs parsed for good (`set_stage(..., "embed", chunks_total=n, clear_vendor_submission=True)`)
    in one statement: job -> its chunk count."""
    conn.execute(
        "UPDATE jobs j SET stage = 'embed', chunks_total = r.n, vendor_parse_job_id = NULL,"
        " vendor_parse_file_id = NULL, vendor_parse_jobs = 0, updated_at = now()"
        " FROM unnest(%s::uuid[], %s::int[]) AS r(id, n) WHERE j.id = r.id",
        (list(chunked), list(chunked.values())),
    )


def complete_when_done(conn: psycopg.Connection, job_ids: Sequence[UUID]) -> list[tuple[UUID, UUID]]:
    """`record_progress`, then `complete` when every chunk has a vector, for many running jobs whose rows
    the caller has locked (one statement); return (job, document) of each job completed now."""
    rows = conn.execute(
        "WITH counted AS (SELECT j.id, count(c.id) FILTER (WHERE c.space_id IS NOT NULL) AS done,"
        "  count(c.id) FILTER (WHERE c.space_id IS NOT NULL) >= j.chunks_total AND j.chunks_total > 0 AS whole"
        "  FROM jobs j LEFT JOIN chunks c ON c.document_id = j.document_id"
        "  WHERE j.id = ANY(%s) AND j.status = 'running' AND j.chunks_total IS NOT NULL GROUP BY j.id)"
        " UPDATE jobs j SET chunks_done = counted.done, updated_at = now(),"
        " status = CASE WHEN counted.whole THEN 'completed' ELSE j.status END,"
        " stage = CASE WHEN counted.whole THEN 'done' ELSE j.stage END,"
        " error = CASE WHEN counted.whole THEN NULL ELSE j.error END,"
        " finished_at = CASE WHEN counted.whole THEN now() ELSE j.finished_at END"
        " FROM counted WHERE j.id = counted.id RETURNING j.id, j.document_id, counted.whole",
        (list(job_ids),),
    ).fetchall()
    return [(job_id, document_id) for job_id, document_id, whole in rows if whole]


def lock(conn: psycopg.Connection, job_id: UUID) -> Job | None:
    """Lock the job row for the rest of the transaction (serialises the final steps of concurrent batches),
    its document held first (see `_HOLD_DOCUMENT`)."""
    if conn.execute(_HOLD_DOCUMENT, (job_id,)).fetchone() is None:
        return None
    return _cur(conn).execute(f"SELECT {COLUMNS} FROM jobs WHERE id = %s FOR UPDATE", (job_id,)).fetchone()


def record_progress(conn: psycopg.Connection, job_id: UUID, document_id: UUID) -> tuple[int, int]:
    """Recount embedded chunks from the chunks themselves (idempotent); return (done, total)."""
    row = one(
        conn.execute(
            "UPDATE jobs SET chunks_done = (SELECT count(*) FROM chunks WHERE document_id = %s AND space_id IS NOT NULL),"
            " updated_at = now() WHERE id = %s RETURNING chunks_done, coalesce(chunks_total, 0)",
            (document_id, job_id),
        )
    )
    return row[0], row[1]


def complete(conn: psycopg.Connection, job_id: UUID) -> bool:
    row = conn.execute(
        "UPDATE jobs SET status = 'completed', stage = 'done', error = NULL, finished_at = now(), updated_at = now()"
        " WHERE id = %s AND status = 'running' RETURNING id",
        (job_id,),
    ).fetchone()
    return row is not None


def fail(conn: psycopg.Connection, job_id: UUID, error: str) -> bool:
    row = conn.execute(
        "UPDATE jobs SET status = 'failed', error = %s, finished_at = now(), updated_at = now()"
        " WHERE id = %s AND status NOT IN ('completed', 'failed') RETURNING id",
        (error, job_id),
    ).fetchone()
    return row is not None


def defer(conn: psycopg.Connection, job_id: UUID, reason: str, delay_s: int) -> None:
    conn.execute(
        "UPDATE jobs SET status = 'deferred', error = %s, updated_at = now(),"
        " deferred_until = now() + make_interval(secs => %s) WHERE id = %s",
        (reason, delay_s, job_id),
    )


def requeue(conn: psycopg.Connection, job_id: UUID) -> Job | None:
    """Put a failed job back in line (`ingest retry`), held: admission sends it when its user has room.

    A vendor parse job still recorded is kept, with its round's count reset: the retry resumes it if it
    is pending or completed (already paid for), and submits the file afresh only if it failed."""
    return (
        _cur(conn)
        .execute(
            f"UPDATE jobs SET status = 'queued', stage = 'queued', error = NULL, finished_at = NULL,"
            f" chunks_total = NULL, chunks_done = 0, enqueued_at = NULL, vendor_parse_jobs = 0,"
            f" updated_at = now()"
            f" WHERE id = %s AND status = 'failed' RETURNING {COLUMNS}",
            (job_id,),
        )
        .fetchone()
    )


def count_by_status(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall()
    return {status: n for status, n in rows}


def backlog(conn: psycopg.Connection) -> tuple[int, int, int]:
    """Work not yet embedded, over every queued or running job: (chunks still without a vector in the
    jobs already chunked, how many jobs those are, how many jobs are not chunked yet)."""
    row = one(
        conn.execute(
            "SELECT coalesce(sum(chunks_total - chunks_done) FILTER (WHERE chunks_total IS NOT NULL), 0),"
            " count(*) FILTER (WHERE chunks_total IS NOT NULL), count(*) FILTER (WHERE chunks_total IS NULL)"
            " FROM jobs WHERE status IN ('queued', 'running')"
        )
    )
    return int(row[0]), int(row[1]), int(row[2])


def document_sizes(conn: psycopg.Connection, job_ids: Sequence[UUID]) -> dict[UUID, int]:
    """The size in bytes of each job's document."""
    rows = conn.execute(
        "SELECT j.id, d.bytes FROM jobs j JOIN documents d ON d.id = j.document_id WHERE j.id = ANY(%s)",
        (list(job_ids),),
    ).fetchall()
    return {job_id: size for job_id, size in rows}


def open_count(conn: psycopg.Connection) -> int:
    """Jobs queued or running (a deferred job waits for its time and is not counted)."""
    return scalar(conn.execute("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"))


def owed_a_message(conn: psycopg.Connection, job_ids: Sequence[UUID]) -> list[UUID]:
    """Those of the jobs that still wait for a message to move them: queued or running, and not waiting
    for a Batch API batch (a deferred job waits for its time; the sweep sends it then)."""
    rows = conn.execute(
        "SELECT id FROM jobs WHERE id = ANY(%s) AND status IN ('queued', 'running') AND stage IS DISTINCT FROM 'batch'"
        " ORDER BY id",
        (list(job_ids),),
    ).fetchall()
    return [job_id for (job_id,) in rows]


def note_batch_wait(conn: psycopg.Connection, job_ids: Collection[UUID], reason: str | None) -> None:
    """Say why jobs waiting for a batch (stage `batch`) wait: the budget refused their share, say; None
    clears it once their batch is out. It is the job's `error` while it runs, as a deferred job's reason is."""
    if job_ids:
        conn.execute(
            "UPDATE jobs SET error = %s WHERE id = ANY(%s) AND status = 'running' AND stage = 'batch'"
            " AND error IS DISTINCT FROM %s",
            (reason, list(job_ids), reason),
        )
