"""`ingest documents list|show|delete`: the CLI user's documents (see `ingest status` for their jobs)."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID

import typer
from rich.table import Table

from ingest.blobs import build_blob_store
from ingest.cli.common import Session, UserOption, fail, handle_errors, out, session, short_id
from ingest.store import chunks, documents, jobs
from ingest.store.users import User

documents_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Your documents: list, show, delete."
)

IdArgument = Annotated[str, typer.Argument(help="A document id, or its first characters as listed.")]


def resolve(db: Session, user: User, text: str) -> UUID:
    """The user's document named by a full id or a unique prefix; another user's is never found."""
    found = documents.ids_starting(db.conn, text.strip(), owner_id=user.id)
    if not found or len(text.strip()) < 4:
        raise fail(f"{user.name} has no document {text!r}; `ingest documents list` shows them")
    if len(found) > 1:
        raise fail(f"{text!r} starts more than one document id; give more of it")
    return found[0]


@documents_app.command("list")
@handle_errors
def list_documents(
    user: UserOption = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Your documents, newest first, with their status and chunk counts."""
    with session() as db:
        owner = db.user(user)
        docs = documents.list_for_owner(db.conn, owner.id, limit=limit)
        counts = chunks.counts(db.conn, [d.id for d in docs])
    if as_json:
        out.print_json(json.dumps([_row(d, counts.get(d.id, 0)) for d in docs]))
        return
    table = Table(title=f"{len(docs)} documents of {owner.name}", title_justify="left")
    for column, justify in (("id", "left"), ("file", "left"), ("status", "left"), ("chunks", "right")):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    table.add_column("added", no_wrap=True)
    for d in docs:
        table.add_row(
            short_id(d.id), d.filename, d.status, str(counts.get(d.id, 0)), f"{d.created_at:%Y-%m-%d %H:%M}"
        )
    out.print(table)


@documents_app.command("show")
@handle_errors
def show(
    document_id: IdArgument,
    user: UserOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """One of your documents: its file, status, pages, chunks and latest job."""
    with session() as db:
        owner = db.user(user)
        wanted = resolve(db, owner, document_id)
        doc = documents.get(db.conn, wanted, owner_id=owner.id)
        job = jobs.latest_for_document(db.conn, wanted)
        n_chunks = chunks.count(db.conn, wanted)
    if doc is None:  # deleted in between
        raise fail(f"{owner.name} has no document {document_id!r}")
    row = _row(doc, n_chunks)
    row["job"] = None if job is None else {"id": str(job.id), "status": job.status, "stage": job.stage}
    if as_json:
        out.print_json(json.dumps(row))
        return
    for key, value in row.items():
        shown = f"{value['id']} {value['status']} ({value['stage']})" if isinstance(value, dict) else value
        out.print(f"{key}: {'' if shown is None else shown}", markup=False, highlight=False)


@documents_app.command("delete")
@handle_errors
def delete(document_id: IdArgument, user: UserOption = None) -> None:
    """Delete one of your documents with its jobs, chunks and vectors (and its file if nothing else uses it)."""
    with session() as db:
        owner = db.user(user)
        wanted = resolve(db, owner, document_id)
        with db.conn.transaction():
            doc = documents.get(db.conn, wanted, owner_id=owner.id)
            # Jobs, chunks and vectors go with the row (ON DELETE CASCADE).
            unused_blob = documents.delete(db.conn, wanted) if doc else None
        if doc is None:
            raise fail(f"{owner.name} has no document {document_id!r}")
        if unused_blob is not None:  # the deletion is committed: nothing refers to the file now
            build_blob_store(db.settings).delete(unused_blob)
    out.print(f"deleted {doc.filename} ({doc.id})", markup=False, highlight=False)


def _row(d: documents.Document, n_chunks: int) -> dict[str, object]:
    return {
        "id": str(d.id),
        "filename": d.filename,
        "status": d.status,
        "media_type": d.media_type,
        "bytes": d.bytes,
        "pages": d.pages,
        "parser": d.parser,
        "chunks": n_chunks,
        "partial": d.partial,
        "error": d.error,
        "created_at": d.created_at.isoformat(),
    }
