"""`ingest status`, `retry`, `verify` and `health`: looking at jobs and at the system."""

from __future__ import annotations

import json
import time
from typing import Annotated
from uuid import UUID

import typer
from psycopg import sql
from rich.table import Table

from ingest.cli.common import err, fail, handle_errors, out, runtime
from ingest.services.health import check_all
from ingest.services.submit import retry_job
from ingest.store import documents, jobs, upgrades
from workers.runtime import Runtime

RETRY_POLL_S = 0.2


def _uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise fail(f"{value!r} is not a job or document id") from None


def _job_row(job: jobs.Job, filename: str) -> dict[str, object]:
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
    }


@handle_errors
def status(
    job_or_doc_id: Annotated[str | None, typer.Argument(help="A job or document id.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed", help="Every failed job (its message given up: the dead letters), to replay with `ingest retry`."
        ),
    ] = False,
) -> None:
    """Jobs and their stage; without an id, the latest. Also the chunks waiting for upgrade (embedded by the
    mock standing in for OpenAI in hybrid mode): all of them, or the document's."""
    if failed and job_or_doc_id is not None:
        raise fail("give a job or document id, or --failed, not both")
    with runtime() as rt, rt.pool.connection() as conn:
        if failed:
            found = jobs.failed(conn)
        elif job_or_doc_id is None:
            found = jobs.latest(conn, limit=20)
        else:
            wanted = _uuid(job_or_doc_id)
            job = jobs.get(conn, wanted) or jobs.latest_for_document(conn, wanted)
            if job is None:
                raise fail(f"no job or document {job_or_doc_id}")
            found = [job]
        names = {j.document_id: documents.get(conn, j.document_id) for j in found}
        if job_or_doc_id is None:
            waiting = upgrades.count(conn)
        else:
            waiting = upgrades.count_for(conn, found[0].document_id)
    rows = [_job_row(j, doc.filename if (doc := names[j.document_id]) else "") for j in found]
    if as_json:
        one = None if job_or_doc_id is None else {**rows[0], "chunks_waiting_for_upgrade": waiting}
        out.print_json(json.dumps(rows if one is None else one))
        return
    table = Table()
    for column in ("job", "document", "status", "stage", "progress", "attempts", "error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["filename"]),
            str(row["status"]),
            str(row["stage"]),
            f"{float(row['progress']):.0%}",  # type: ignore[arg-type]
            str(row["attempts"]),
            str(row["error"] or ""),
        )
    out.print(table)
    if failed:
        out.print(f"{len(rows)} failed jobs; run one again with `ingest retry JOB_ID`", markup=False)
    out.print(f"chunks waiting for upgrade to the real embedder: {waiting}")


@handle_errors
def retry(
    job_id: Annotated[str, typer.Argument(help="The failed job to run again.")],
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Return when the job is completed, failed or deferred.")
    ] = True,
) -> None:
    """Run a failed job again; exit 0 when it completes (or, with --no-wait, once it is queued)."""
    with runtime(workers=True) as rt:
        job = retry_job(rt, _uuid(job_id))
        if not wait:
            out.print(f"job {job.id} queued again")
            return
        with err.status(f"job {job.id}: running again"):
            final = _wait_final(rt, job.id)
    if final is None:
        raise fail(f"job {job.id}: its document was deleted while it ran")
    detail = f": {final.error}" if final.error else ""
    if final.status != "completed":
        raise fail(f"job {final.id} {final.status}{detail}")
    out.print(f"job {final.id} completed")


def _wait_final(rt: Runtime, job_id: UUID) -> jobs.Job | None:
    while True:
        with rt.pool.connection() as conn:
            job = jobs.get(conn, job_id)
        if job is None or job.status in jobs.SETTLED:
            return job
        time.sleep(RETRY_POLL_S)


@handle_errors
def verify() -> None:
    """Check that every completed document has all its chunks and vectors."""
    problems: list[str] = []
    with runtime() as rt, rt.pool.connection() as conn:
        spaces = conn.execute("SELECT id, table_name FROM embedding_spaces").fetchall()
        vector_rows = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT chunk_id, {sid}::int AS space_id FROM {t}").format(
                sid=sql.Literal(sid), t=sql.Identifier(table)
            )
            for sid, table in spaces
        ) if spaces else sql.SQL("SELECT NULL::bigint AS chunk_id, NULL::int AS space_id WHERE false")
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


@handle_errors
def health(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each dependency and service: ok, or why not."""
    with runtime() as rt:
        report = check_all(rt)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
    else:
        for check in report.checks:
            out.print(f"{check.name}: {'ok' if check.ok else 'FAIL'} {check.detail}".rstrip(), markup=False)
    if not report.ok:
        raise typer.Exit(1)
