"""`ingest status` and `ingest verify`: what became of the jobs and documents, read from the database
alone (no Runtime: no pool, router or broker)."""

from __future__ import annotations

import json
import re
from typing import Annotated
from uuid import UUID

import psycopg
import typer
from psycopg import sql
from rich import box
from rich.table import Table

from ingest.cli.common import UserOption, fail, handle_errors, out, session, short_id
from ingest.leases import LeaseState
from ingest.store import documents, embedding_batches, jobs, leases, upgrades

SHORT_ID = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]{3,35}")


def job_or_document_id(conn: psycopg.Connection, value: str) -> UUID:
    """A full job or document id, or the first characters of one (as tables show them) naming only one."""
    try:
        return UUID(value)
    except ValueError:
        pass
    if SHORT_ID.fullmatch(value):
        rows = conn.execute(
            "(SELECT id FROM jobs WHERE id::text LIKE %(p)s LIMIT 2)"
            " UNION ALL (SELECT id FROM documents WHERE id::text LIKE %(p)s LIMIT 2)",
            {"p": value.lower() + "%"},
        ).fetchall()
        if len(rows) == 1:
            found: UUID = rows[0][0]
            return found
        if rows:
            raise fail(f"{value!r} starts more than one id; give more of it")
    raise fail(f"{value!r} is not a job or document id")


def _latest_of_document(conn: psycopg.Connection, document_id: UUID, owner_id: int | None) -> jobs.Job | None:
    if owner_id is not None and documents.get(conn, document_id, owner_id=owner_id) is None:
        return None
    return jobs.latest_for_document(conn, document_id)


def _waiting(conn: psycopg.Connection, found: list[jobs.Job], *, whole: bool) -> int:
    if whole:
        return upgrades.count(conn)
    return upgrades.count_for(conn, found[0].document_id) if found else 0


def _lease_row(lease: LeaseState) -> dict[str, object]:
    return {
        "unit": lease.unit,
        "worker": lease.owner,  # None: its holder's lease lapsed and a sweep re-sent it, not taken yet
        "generation": lease.generation,
        "last_heartbeat_at": lease.renewed_at.isoformat(),
        "expires_at": lease.expires_at.isoformat(),
    }


def _held_by(held: list[dict[str, object]]) -> list[str]:
    """Who works on the job now, and when each last reported: 'parse: host:pid:token, last report 12:00:01'."""
    return [
        f"{lease['unit']}: {lease['worker'] or 're-sent'}, last report {str(lease['last_heartbeat_at'])[11:19]}"
        for lease in held
    ]


def _batch_row(waiting: embedding_batches.Waiting | None) -> dict[str, object] | None:
    if waiting is None:
        return None
    deadline = waiting.expires_at.isoformat() if waiting.expires_at else None
    return {"batch_id": waiting.vendor_batch_id, "deadline": deadline}


def _waiting_line(batch: dict[str, object], why: object = None) -> str:
    """'waiting for batch batch_abc (deadline 2026-12-07 05:14 UTC)', or that its inputs are gathering, or
    why they are not sent (`why`: the budget refused their share)."""
    if batch["batch_id"] is None:
        return f"waiting for batch: {why or 'its inputs gather for the next one'}"
    deadline = f" (deadline {str(batch['deadline'])[:16].replace('T', ' ')} UTC)" if batch["deadline"] else ""
    return f"waiting for batch {batch['batch_id']}{deadline}"


def _job_row(
    job: jobs.Job, filename: str, held: list[LeaseState], batch: embedding_batches.Waiting | None = None
) -> dict[str, object]:
    return {
        "id": str(job.id),
        "document_id": str(job.document_id),
        "filename": filename,
        "status": job.status,
        "stage": job.stage,
        "progress": job.progress,
        "attempts": job.attempts,
        "error": job.error,
        "deferred_until": job.deferred_until.isoformat() if job.deferred_until else None,
        "leases": [_lease_row(lease) for lease in held],
        # the Batch API batch this job waits for (stage `batch`), with the vendor's deadline
        "batch": _batch_row(batch),
    }


@handle_errors
def status(
    job_or_doc_id: Annotated[str | None, typer.Argument(help="A job or document id.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed",
            help="Every failed job (its message given up: the dead letters), to replay with `ingest retry`.",
        ),
    ] = False,
    user: UserOption = None,
    all_users: Annotated[
        bool, typer.Option("--all", help="Every user's jobs, not only the CLI user's.")
    ] = False,
) -> None:
    """Your jobs and their stage (the CLI user's: --user, else INGEST_USER, else `local`); without an id,
    the latest. Also the chunks waiting for upgrade (embedded by the mock standing in for OpenAI in hybrid
    mode): all of them, or the document's."""
    if failed and job_or_doc_id is not None:
        raise fail("give a job or document id, or --failed, not both")
    with session() as db:
        conn = db.conn
        owner = db.user(user)
        mine = None if all_users else owner.id
        if failed:
            found = jobs.failed(conn)
        elif job_or_doc_id is None:
            found = jobs.latest(conn, owner_id=mine, limit=20)
        else:
            wanted = job_or_document_id(conn, job_or_doc_id)
            job = jobs.get(conn, wanted, owner_id=mine) or _latest_of_document(conn, wanted, mine)
            if job is None:
                whose = "" if all_users else f" of {owner.name} (--all: any user's)"
                raise fail(f"no job or document {job_or_doc_id}{whose}")
            found = [job]
        names = {j.document_id: documents.get(conn, j.document_id) for j in found}
        if mine is not None:  # the failed jobs of every user are listed: keep the CLI user's
            found = [j for j in found if (d := names[j.document_id]) is not None and d.owner_id == mine]
        waiting = _waiting(conn, found, whole=job_or_doc_id is None)
        held = leases.of_jobs(conn, [j.id for j in found])
        batches = embedding_batches.waiting(conn, [j.id for j in found])
    rows = [
        _job_row(j, d.filename if (d := names[j.document_id]) else "", held[j.id], batches.get(j.id))
        for j in found
    ]
    if as_json:
        one = None if job_or_doc_id is None else {**rows[0], "chunks_waiting_for_upgrade": waiting}
        out.print_json(json.dumps(rows if one is None else one))
        return
    whose = "every user" if all_users else f"user {owner.name}"
    out.print(f"jobs of {whose}, latest first (ids shortened; --json gives them whole)", markup=False)
    # Fits 80 columns: short ids that never wrap; only the file name and the error fold.
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("job", no_wrap=True)
    table.add_column("document", overflow="fold", ratio=2)
    for column in ("status", "stage"):
        table.add_column(column, no_wrap=True)
    table.add_column("done", justify="right", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold", ratio=3)
    for row, job in zip(rows, found, strict=True):
        table.add_row(
            short_id(job.id),
            str(row["filename"]),
            str(row["status"]),
            str(row["stage"] or ""),
            f"{float(row['progress']):.0%}",  # type: ignore[arg-type]
            str(row["attempts"]),
            str(row["error"] or ""),
        )
    out.print(table)
    for row, job in zip(rows, found, strict=True):  # running jobs: who works on them, and when last heard of
        for line in _held_by(row["leases"]):  # type: ignore[arg-type]
            out.print(f"{short_id(job.id)} held by {line}", markup=False)
        if row["batch"] is not None:
            wait_line = _waiting_line(row["batch"], row["error"])  # type: ignore[arg-type]
            out.print(f"{short_id(job.id)} {wait_line}", markup=False)
    if failed:
        out.print(f"{len(rows)} failed jobs; run one again with `ingest retry JOB_ID`", markup=False)
    out.print(f"chunks waiting for upgrade to the real embedder: {waiting}")


@handle_errors
def verify() -> None:
    """Check that every completed document has all its chunks and vectors."""
    problems: list[str] = []
    with session() as db:
        conn = db.conn
        spaces = conn.execute("SELECT id, table_name FROM embedding_spaces").fetchall()
        vector_rows = (
            sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT chunk_id, {sid}::int AS space_id FROM {t}").format(
                    sid=sql.Literal(sid), t=sql.Identifier(table)
                )
                for sid, table in spaces
            )
            if spaces
            else sql.SQL("SELECT NULL::bigint AS chunk_id, NULL::int AS space_id WHERE false")
        )
        rows = conn.execute(
            sql.SQL(
                "SELECT d.id, d.filename, j.chunks_total, count(c.id),"
                " count(c.id) FILTER (WHERE c.space_id IS NULL),"
                " count(c.id) FILTER (WHERE c.space_id IS NOT NULL AND v.chunk_id IS NULL)"
                " FROM documents d"
                " JOIN LATERAL (SELECT chunks_total FROM jobs WHERE document_id = d.id"
                "   ORDER BY created_at DESC LIMIT 1) j ON true"
                " LEFT JOIN chunks c ON c.document_id = d.id"
                " LEFT JOIN ({vectors}) v ON v.chunk_id = c.id AND v.space_id = c.space_id"
                " WHERE d.status = 'completed' GROUP BY d.id, d.filename, j.chunks_total"
            ).format(vectors=vector_rows)
        ).fetchall()
    for doc_id, filename, expected, found, unembedded, lost in rows:
        if found == 0 or expected != found:
            problems.append(f"{filename} ({doc_id}): {found} chunks stored, {expected} expected")
        if unembedded:
            problems.append(f"{filename} ({doc_id}): {unembedded} chunks have no vector")
        if lost:
            problems.append(f"{filename} ({doc_id}): {lost} chunks point at a missing vector")
    for problem in problems:
        out.print(problem, markup=False)
    out.print(f"{len(rows)} completed documents checked, {len(problems)} problems")
    if problems:
        raise typer.Exit(1)
