"""Accepting a file: check it, store its bytes, record the document and its job, enqueue the job.

Everything that can refuse a file runs before anything is written, so a refused file leaves nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from ingest import formats
from ingest.errors import Conflict, IngestError, NotFound
from ingest.store import blob_refs, documents, embedding_batches, jobs
from ingest.store.users import User
from workers.admission import admit
from workers.runtime import Runtime

# Files recorded per transaction and admitted together by `submit_files`.
SUBMIT_BATCH = 256


@dataclass(frozen=True, slots=True)
class Submitted:
    document_id: UUID
    job_id: UUID
    status: str
    duplicate: bool
    filename: str


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def submit_file(
    rt: Runtime,
    path: Path,
    *,
    user: User,
    filename: str | None = None,
    metadata: dict[str, Any] | None = None,
    callback_url: str | None = None,
    digest: tuple[str, int] | None = None,
    external_id: str | None = None,
    replace: bool = False,
    when_cheapest: bool | None = None,
    batch_fallback: str | None = None,
) -> Submitted:
    """Ingest one file for `user`; the same bytes again return the first document (duplicate=True).

    A new version replaces the user's earlier documents with the same `external_id`, or, with `replace`
    and no external id, the same filename. They stay searchable until the new version is completed.

    `when_cheapest` sends the job's embeddings through the Batch API (workers.batch_route), with
    `batch_fallback` for what a batch does not embed; unset, the settings' defaults.
    """
    checked = _check(rt, path, filename or path.name, digest)
    with rt.pool.connection() as conn, conn.transaction():
        submitted = _record(
            rt,
            conn,
            checked,
            user=user,
            metadata=metadata,
            callback_url=callback_url,
            external_id=external_id,
            replace=replace,
            route=Route(when_cheapest, batch_fallback),
        )
    if not submitted.duplicate:
        # Sent now if the user has fewer than `user_active_jobs` jobs under way, else held until one ends.
        admit(rt, user.id)
    return submitted


def submit_files(
    rt: Runtime,
    paths: Sequence[Path],
    *,
    user: User,
    replace: bool = False,
    when_cheapest: bool | None = None,
    batch_fallback: str | None = None,
    batch: int = SUBMIT_BATCH,
    on_each: Callable[[], None] | None = None,
) -> list[Submitted | IngestError | OSError]:
    """`submit_file` for many files, a batch at a time: each batch's documents and jobs are recorded in one
    transaction and admitted together (so small documents can travel together, workers.batch_plan).
    Each file gets its Submitted, or the error that refused it (a refused file leaves nothing)."""
    results: list[Submitted | IngestError | OSError] = []
    for start in range(0, len(paths), batch):
        results += _submit_batch(
            rt,
            paths[start : start + batch],
            user=user,
            replace=replace,
            route=Route(when_cheapest, batch_fallback),
            on_each=on_each,
        )
    return results


def _submit_batch(
    rt: Runtime,
    paths: Sequence[Path],
    *,
    user: User,
    replace: bool,
    route: Route,
    on_each: Callable[[], None] | None,
) -> list[Submitted | IngestError | OSError]:
    results: list[Submitted | IngestError | OSError | None] = [None] * len(paths)
    checked: list[tuple[int, _Checked]] = []
    for i, path in enumerate(paths):
        try:
            checked.append((i, _check(rt, path, path.name, None)))
        except (IngestError, OSError) as refused:
            results[i] = refused
            if on_each:
                on_each()
    if checked:
        with rt.pool.connection() as conn, conn.transaction():
            recorded = _record_many(
                rt, conn, [file for _, file in checked], user=user, replace=replace, route=route
            )
        for (i, _), submitted in zip(checked, recorded, strict=True):
            results[i] = submitted
            if on_each:
                on_each()
    admit(rt, user.id)
    return [r for r in results if r is not None]


@dataclass(frozen=True, slots=True)
class Route:
    """How a job's embeddings go (workers.batch_route); None takes the settings' default."""

    when_cheapest: bool | None = None
    batch_fallback: str | None = None


@dataclass(frozen=True, slots=True)
class _Checked:
    path: Path
    filename: str
    sha256: str
    size: int
    media_type: str


def _check(rt: Runtime, path: Path, filename: str, digest: tuple[str, int] | None) -> _Checked:
    """Everything that can refuse a file, before anything is written."""
    sha256, size = digest or file_digest(path)
    media_type = formats.sniff(path, filename)
    formats.check(path, media_type, formats.Limits.from_settings(rt.settings))
    return _Checked(path, filename, sha256, size, media_type)


def _record(
    rt: Runtime,
    conn: psycopg.Connection,
    file: _Checked,
    *,
    user: User,
    metadata: dict[str, Any] | None = None,
    callback_url: str | None = None,
    external_id: str | None = None,
    replace: bool = False,
    route: Route = Route(),
) -> Submitted:
    """The document and its job (or the earlier document with these bytes), in the caller's transaction."""
    # Held until this commits, with the bytes stored: a delete of another document with these bytes
    # cannot remove them in between (store.blob_refs).
    blob_refs.lock(conn, file.sha256)
    doc, created = documents.insert(
        conn,
        owner_id=user.id,
        sha256=file.sha256,
        filename=file.filename,
        media_type=file.media_type,
        size=file.size,
        metadata=metadata,
        callback_url=callback_url,
        external_id=external_id,
        replaces="external_id" if external_id else "filename" if replace else None,
    )
    if not created:
        job = jobs.latest_for_document(conn, doc.id)
        assert job is not None  # a document is created with its job, in one transaction
        return Submitted(doc.id, job.id, job.status, True, doc.filename)
    rt.blobs.put_file(file.sha256, file.path)
    job = jobs.create(conn, doc.id)
    cheapest = rt.settings.when_cheapest if route.when_cheapest is None else route.when_cheapest
    if cheapest:
        fallback = route.batch_fallback or rt.settings.batch_fallback
        embedding_batches.set_route(conn, job.id, embedding_batches.Route("batch", fallback))
    return Submitted(doc.id, job.id, job.status, False, file.filename)


def _record_many(
    rt: Runtime, conn: psycopg.Connection, files: list[_Checked], *, user: User, replace: bool, route: Route
) -> list[Submitted]:
    """`_record` for many files in a few statements: their blobs locked (in one order: two batches that
    share files lock them alike, store.blob_refs), the new documents and their jobs inserted together.
    A file whose bytes the user already has, or an earlier file of the batch had, is a duplicate."""
    blob_refs.lock_many(conn, [file.sha256 for file in files])
    new = [documents.New(f.sha256, f.filename, f.media_type, f.size) for f in files]
    found = documents.insert_many(conn, user.id, new, replaces="filename" if replace else None)
    created = {sha: doc for sha, (doc, is_new) in found.items() if is_new}
    stored: set[str] = set()
    for file in files:
        if file.sha256 in created and file.sha256 not in stored:
            rt.blobs.put_file(file.sha256, file.path)
            stored.add(file.sha256)
    made = jobs.create_many(conn, [doc.id for doc in created.values()])
    earlier = jobs.latest_for_documents(conn, [doc.id for doc, is_new in found.values() if not is_new])
    cheapest = rt.settings.when_cheapest if route.when_cheapest is None else route.when_cheapest
    if cheapest:
        fallback = route.batch_fallback or rt.settings.batch_fallback
        for job in made.values():
            embedding_batches.set_route(conn, job.id, embedding_batches.Route("batch", fallback))
    out: list[Submitted] = []
    first: set[str] = set()
    for file in files:
        doc, is_new = found[file.sha256]
        job = made[doc.id] if is_new else earlier[doc.id]
        fresh = is_new and file.sha256 not in first
        first.add(file.sha256)
        out.append(Submitted(doc.id, job.id, job.status, not fresh, file.filename if fresh else doc.filename))
    return out


def retry_job(rt: Runtime, job_id: UUID, *, owner_id: int | None = None) -> jobs.Job:
    """Run a failed job again (`ingest retry`, `POST /v1/jobs/{id}/retry`). It queues behind the user's
    other jobs, like a new upload. NotFound: no job `job_id` (of `owner_id`, when given); Conflict: the
    job has not failed."""
    with rt.pool.connection() as conn, conn.transaction():
        job = jobs.get(conn, job_id, owner_id=owner_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        requeued = jobs.requeue(conn, job_id)
        if requeued is None:
            raise Conflict(f"job {job_id} is {job.status}, not failed: only a failed job can be retried")
        documents.set_status(conn, requeued.document_id, "queued")
        doc = documents.get(conn, requeued.document_id)
        assert doc is not None  # a job's document goes only with the job
    admit(rt, doc.owner_id)
    return requeued
