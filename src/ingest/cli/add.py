"""`ingest add`: submit files and folders, follow their jobs with a progress bar, summarise."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ingest.cli.common import err, out
from ingest.errors import IngestError
from ingest.services.submit import Submitted, submit_file
from ingest.store import documents, jobs
from ingest.store.users import User
from workers.runtime import Runtime

POLL_S = 0.2


@dataclass(slots=True)
class Outcome:
    path: Path
    status: str  # completed | duplicate | failed | refused | deferred | queued | running
    detail: str = ""
    submitted: Submitted | None = None


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and every file under folders named (recursively, hidden ones skipped), in order."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if child.is_file() and not any(part.startswith(".") for part in relative):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def submit_all(
    rt: Runtime, files: list[Path], user: User, progress: Progress, *, replace: bool = False
) -> list[Outcome]:
    outcomes = []
    task = progress.add_task("files", total=len(files))
    for path in files:
        try:
            outcomes.append(Outcome(path, "queued", submitted=submit_file(rt, path, user=user, replace=replace)))
        except IngestError as exc:
            outcomes.append(Outcome(path, "refused", str(exc)))
        except OSError as exc:
            outcomes.append(Outcome(path, "refused", f"cannot read the file: {exc.strerror or exc}"))
        progress.advance(task)
    return outcomes


def follow(rt: Runtime, outcomes: list[Outcome], user: User, progress: Progress, *, wait: bool) -> None:
    """Wait until every job is completed, failed or deferred, showing chunk progress; record each result."""
    pending: dict[UUID, list[Outcome]] = {}
    for o in outcomes:
        if o.submitted is not None:  # several files can share a job: the same bytes under two names
            pending.setdefault(o.submitted.job_id, []).append(o)
    chunk_task = progress.add_task("chunks", total=None)
    while pending:
        with rt.pool.connection() as conn:
            states = {job_id: jobs.get(conn, job_id) for job_id in pending}
        done = sum(j.chunks_done for j in states.values() if j)
        total = sum(j.chunks_total or 0 for j in states.values() if j)
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
        outcome.detail = f"{job.error} (until {job.deferred_until:%Y-%m-%d %H:%M %Z})" if job.deferred_until else ""
    if outcome.submitted.duplicate and job.status == "completed":
        outcome.status = "duplicate"
        with rt.pool.connection() as conn:
            first = documents.get(conn, outcome.submitted.document_id, owner_id=user.id)
        outcome.detail = f"same bytes as {first.filename}" if first else ""


def summary(outcomes: list[Outcome]) -> Table:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    table = Table(title=", ".join(f"{n} {status}" for status, n in sorted(counts.items())), title_justify="left")
    for column in ("file", "status", "detail"):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        if o.status not in ("completed", "duplicate"):
            table.add_row(str(o.path), o.status, o.detail)
    return table


def run_add(rt: Runtime, paths: list[Path], user: User, *, wait: bool, replace: bool = False) -> list[Outcome]:
    files = list(expand(paths))
    columns = (TextColumn("{task.description:>6}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        outcomes = submit_all(rt, files, user, progress, replace=replace)
        follow(rt, outcomes, user, progress, wait=wait)
    return outcomes


def print_summary(outcomes: list[Outcome]) -> None:
    table = summary(outcomes)
    out.print(table if table.row_count else table.title)
