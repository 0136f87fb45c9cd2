"""`ingest add`: submit files and folders, follow their jobs with a progress bar, summarise."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest.cli import quote
from ingest.cli.common import UserOption, err, handle_errors, out
from ingest.cli.files import expand
from ingest.cli.runtime import cli_user, runtime
from ingest.errors import IngestError
from ingest.services.submit import Submitted, submit_files
from ingest.store import documents, jobs
from ingest.store.users import User
from workers.runtime import Runtime

POLL_S = 0.2


class BatchFallback(str, Enum):
    batch = "batch"
    sync = "sync"


@dataclass(slots=True)
class Outcome:
    path: Path
    status: str  # completed | duplicate | failed | refused | deferred | queued | running
    detail: str = ""
    submitted: Submitted | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """How the files' embeddings go: None takes the settings' default."""

    when_cheapest: bool | None = None
    batch_fallback: str | None = None


def submit_all(
    rt: Runtime,
    files: list[Path],
    user: User,
    progress: Progress,
    *,
    replace: bool = False,
    route: Route = Route(),
) -> list[Outcome]:
    task = progress.add_task("files", total=len(files))
    results = submit_files(
        rt,
        files,
        user=user,
        replace=replace,
        when_cheapest=route.when_cheapest,
        batch_fallback=route.batch_fallback,
        on_each=lambda: progress.advance(task),
    )
    return [_outcome(path, result) for path, result in zip(files, results, strict=True)]


def _outcome(path: Path, result: Submitted | IngestError | OSError) -> Outcome:
    if isinstance(result, IngestError):
        return Outcome(path, "refused", str(result))
    if isinstance(result, OSError):
        return Outcome(path, "refused", f"cannot read the file: {result.strerror or result}")
    return Outcome(path, "queued", submitted=result)


def follow(rt: Runtime, outcomes: list[Outcome], user: User, progress: Progress, *, wait: bool) -> None:
    """Wait until every job is completed, failed or deferred, showing chunk progress; record each result.

    The chunks' total only grows: a job's chunks join it once the job is parsed and stay after it ends.
    A duplicate's job is the earlier ingestion's: its chunks are not this command's work and not counted."""
    pending: dict[UUID, list[Outcome]] = {}
    for o in outcomes:
        if o.submitted is not None:  # several files can share a job: the same bytes under two names
            pending.setdefault(o.submitted.job_id, []).append(o)
    counted = {o.submitted.job_id for o in outcomes if o.submitted is not None and not o.submitted.duplicate}
    chunks: dict[UUID, tuple[int, int]] = {}  # job -> (embedded, total), kept once the job has ended
    chunk_task = progress.add_task("chunks", total=None)
    while pending:
        with rt.pool.connection() as conn:
            states = {job_id: jobs.get(conn, job_id) for job_id in pending}
        chunks.update(
            {i: (j.chunks_done, j.chunks_total or 0) for i, j in states.items() if j and i in counted}
        )
        done, total = sum(d for d, _ in chunks.values()), sum(t for _, t in chunks.values())
        progress.update(chunk_task, completed=done, total=total or None)
        for job_id, job in states.items():
            if job is None or job.status in jobs.SETTLED or not wait:
                for outcome in pending.pop(job_id):
                    settle(rt, outcome, job, user)
        if pending:
            time.sleep(POLL_S)


def settle(rt: Runtime, outcome: Outcome, job: jobs.Job | None, user: User) -> None:
    assert outcome.submitted is not None
    if job is None:
        outcome.status, outcome.detail = "failed", "the document was deleted while it was being ingested"
        return
    outcome.status = job.status
    if job.status == "failed":
        outcome.detail = job.error or ""
    elif job.status == "deferred":
        outcome.detail = (
            f"{job.error} (until {job.deferred_until:%Y-%m-%d %H:%M %Z})" if job.deferred_until else ""
        )
    if outcome.submitted.duplicate and job.status == "completed":
        outcome.status = "duplicate"
        with rt.pool.connection() as conn:
            first = documents.get(conn, outcome.submitted.document_id, owner_id=user.id)
        outcome.detail = f"same bytes as {first.filename}" if first else ""


def summary(outcomes: list[Outcome]) -> Table:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    table = Table(
        title=", ".join(f"{n} {status}" for status, n in sorted(counts.items())), title_justify="left"
    )
    for column in ("file", "status", "detail"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        if o.status not in ("completed", "duplicate"):
            table.add_row(str(o.path), o.status, o.detail)
    return table


def run_add(
    rt: Runtime, paths: list[Path], user: User, *, wait: bool, replace: bool = False, route: Route = Route()
) -> list[Outcome]:
    files = list(expand(paths))
    columns = (TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        outcomes = submit_all(rt, files, user, progress, replace=replace, route=route)
        follow(rt, outcomes, user, progress, wait=wait)
    return outcomes


def print_summary(outcomes: list[Outcome]) -> None:
    table = summary(outcomes)
    out.print(table if table.row_count else table.title)


@handle_errors
def add(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (recursively).")],
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Return when every job has ended (else once all are queued)."),
    ] = True,
    user: UserOption = None,
    estimate: Annotated[
        bool, typer.Option("--estimate", help="Print the quote (pages, tokens, dollars) and ingest nothing.")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Each file is a new version of your document with the same filename: it replaces it"
            " once ingested (search sees the old version until then).",
        ),
    ] = False,
    when_cheapest: Annotated[
        bool | None,
        typer.Option(
            "--when-cheapest/--now",
            help="Embed through OpenAI's Batch API: half the price, done within 24 hours (default:"
            " INGEST_WHEN_CHEAPEST). --now: the embeddings endpoint.",
            show_default=False,
        ),
    ] = None,
    batch_fallback: Annotated[
        BatchFallback | None,
        typer.Option(
            "--batch-fallback",
            help="What --when-cheapest does with inputs a batch did not embed (expired, failed lines): send"
            " them in a later batch, or embed them now at the full price (default: INGEST_BATCH_FALLBACK).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Ingest files or folders: parse, chunk, embed and store each one."""
    if estimate:
        quote.estimate(paths)
        return
    with runtime(workers=True) as rt:
        route = Route(when_cheapest, batch_fallback.value if batch_fallback else None)
        outcomes = run_add(rt, paths, cli_user(rt, user), wait=wait, replace=replace, route=route)
    print_summary(outcomes)
    # Without waiting, a queued or running job is what was asked for; only a refusal or a failure is not.
    fine = ("completed", "duplicate") if wait else ("completed", "duplicate", "queued", "running", "deferred")
    if any(o.status not in fine for o in outcomes):
        raise typer.Exit(1)
