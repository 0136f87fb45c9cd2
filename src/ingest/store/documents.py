"""Documents: one row per (owner, bytes); the same bytes from the same owner are one document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

COLUMNS = (
    "id, owner_id, sha256, filename, media_type, bytes, status, parser, pages, partial, error,"
    " metadata, callback_url, created_at, updated_at"
)

# How a new version finds the documents it replaces: the same external id, or the same filename.
Replaces = Literal["external_id", "filename"]


@dataclass(slots=True)
class Document:
    id: UUID
    owner_id: int
    sha256: str
    filename: str
    media_type: str
    bytes: int
    status: str
    parser: str | None
    pages: int | None
    partial: bool
    error: str | None
    metadata: dict[str, Any]
    callback_url: str | None
    created_at: datetime
    updated_at: datetime


def insert(
    conn: psycopg.Connection,
    *,
    owner_id: int,
    sha256: str,
    filename: str,
    media_type: str,
    size: int,
    metadata: dict[str, Any] | None = None,
    callback_url: str | None = None,
    external_id: str | None = None,
    replaces: Replaces | None = None,
) -> tuple[Document, bool]:
    """Insert a document; return it and whether it is new (False: the owner already has these bytes).

    `replaces` names how it finds the earlier versions it replaces once completed (see `supersede`).
    """
    cur = conn.cursor(row_factory=class_row(Document))
    created = cur.execute(
        f"INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, metadata, callback_url,"
        f" external_id, replaces) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" ON CONFLICT (owner_id, sha256) DO NOTHING RETURNING {COLUMNS}",
        (
            owner_id,
            sha256,
            filename,
            media_type,
            size,
            Jsonb(metadata or {}),
            callback_url,
            external_id,
            replaces,
        ),
    ).fetchone()
    if created is not None:
        return created, True
    existing = cur.execute(
        f"SELECT {COLUMNS} FROM documents WHERE owner_id = %s AND sha256 = %s", (owner_id, sha256)
    ).fetchone()
    assert existing is not None  # the conflict says it exists; documents are only deleted by their owner
    return existing, False


@dataclass(frozen=True, slots=True)
class New:
    """A document to insert (`insert_many`)."""

    sha256: str
    filename: str
    media_type: str
    size: int


def insert_many(
    conn: psycopg.Connection, owner_id: int, new: Sequence[New], *, replaces: Replaces | None = None
) -> dict[str, tuple[Document, bool]]:
    """`insert` for many documents of one owner in two statements: by sha256, the document and whether
    it is new (the first of equal bytes in `new` is the one inserted)."""
    cur = conn.cursor(row_factory=class_row(Document))
    created = cur.execute(
        f"INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, replaces)"
        f" SELECT %s, r.sha256, r.filename, r.media_type, r.bytes, %s"
        f" FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) WITH ORDINALITY"
        f" AS r(sha256, filename, media_type, bytes, n) ORDER BY r.n"
        f" ON CONFLICT (owner_id, sha256) DO NOTHING RETURNING {COLUMNS}",
        (
            owner_id,
            replaces,
            [d.sha256 for d in new],
            [d.filename for d in new],
            [d.media_type for d in new],
            [d.size for d in new],
        ),
    ).fetchall()
    found = {doc.sha256: (doc, True) for doc in created}
    rest = sorted({d.sha256 for d in new} - set(found))
    if rest:
        existing = cur.execute(
            f"SELECT {COLUMNS} FROM documents WHERE owner_id = %s AND sha256 = ANY(%s)", (owner_id, rest)
        ).fetchall()
        found |= {doc.sha256: (doc, False) for doc in existing}
    return found


def get(conn: psycopg.Connection, document_id: UUID, *, owner_id: int | None = None) -> Document | None:
    cur = conn.cursor(row_factory=class_row(Document))
    if owner_id is None:
        return cur.execute(f"SELECT {COLUMNS} FROM documents WHERE id = %s", (document_id,)).fetchone()
    return cur.execute(
        f"SELECT {COLUMNS} FROM documents WHERE id = %s AND owner_id = %s", (document_id, owner_id)
    ).fetchone()


def list_for_owner(
    conn: psycopg.Connection, owner_id: int, *, limit: int = 100, offset: int = 0
) -> list[Document]:
    cur = conn.cursor(row_factory=class_row(Document))
    return cur.execute(
        f"SELECT {COLUMNS} FROM documents WHERE owner_id = %s ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
        (owner_id, limit, offset),
    ).fetchall()


def ids_starting(conn: psycopg.Connection, prefix: str, *, owner_id: int, limit: int = 2) -> list[UUID]:
    """The owner's document ids that start with `prefix` (a short id as the CLI shows it), at most `limit`."""
    rows = conn.execute(
        "SELECT id FROM documents WHERE owner_id = %s AND id::text LIKE %s ORDER BY id LIMIT %s",
        (owner_id, prefix.lower().replace("%", "").replace("_", "") + "%", limit),
    ).fetchall()
    return [row[0] for row in rows]


def set_status(conn: psycopg.Connection, document_id: UUID, status: str, *, error: str | None = None) -> None:
    conn.execute(
        "UPDATE documents SET status = %s, error = %s, updated_at = now() WHERE id = %s",
        (status, error, document_id),
    )


def set_parsed(
    conn: psycopg.Connection, document_id: UUID, *, parser: str, pages: int | None, partial: bool
) -> None:
    conn.execute(
        "UPDATE documents SET parser = %s, pages = %s, partial = %s, updated_at = now() WHERE id = %s",
        (parser, pages, partial, document_id),
    )


def supersede(conn: psycopg.Connection, document_id: UUID) -> int:
    """Delete the earlier versions the document replaces; return how many. Call in the transaction that
    completes it: a search then sees the old versions or the new one, never both or neither."""
    return conn.execute(
        "DELETE FROM documents o USING documents n WHERE n.id = %s AND o.owner_id = n.owner_id"
        " AND o.id <> n.id AND o.created_at < n.created_at"
        " AND ((n.replaces = 'external_id' AND o.external_id = n.external_id)"
        " OR (n.replaces = 'filename' AND o.filename = n.filename))",
        (document_id,),
    ).rowcount


def get_many(conn: psycopg.Connection, document_ids: Sequence[UUID]) -> dict[UUID, Document]:
    cur = conn.cursor(row_factory=class_row(Document))
    rows = cur.execute(f"SELECT {COLUMNS} FROM documents WHERE id = ANY(%s)", (list(document_ids),))
    return {doc.id: doc for doc in rows}


def set_status_many(conn: psycopg.Connection, document_ids: Sequence[UUID], status: str) -> None:
    conn.execute(
        "UPDATE documents SET status = %s, error = NULL, updated_at = now() WHERE id = ANY(%s)",
        (status, list(document_ids)),
    )


@dataclass(frozen=True, slots=True)
class Parsed:
    document_id: UUID
    parser: str
    pages: int | None
    partial: bool


def set_parsed_many(conn: psycopg.Connection, parsed: Sequence[Parsed]) -> None:
    """`set_parsed` for many documents in one statement."""
    conn.execute(
        "UPDATE documents d SET parser = r.parser, pages = r.pages, partial = r.partial, updated_at = now()"
        " FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::bool[]) AS r(id, parser, pages, partial)"
        " WHERE d.id = r.id",
        (
            [p.document_id for p in parsed],
            [p.parser for p in parsed],
            [p.pages for p in parsed],
            [p.partial for p in parsed],
        ),
    )


def supersede_many(conn: psycopg.Connection, document_ids: Sequence[UUID]) -> int:
    """`supersede` for many documents completed in this transaction, in one statement."""
    return conn.execute(
        "DELETE FROM documents o USING documents n WHERE n.id = ANY(%s) AND o.owner_id = n.owner_id"
        " AND o.id <> n.id AND o.created_at < n.created_at"
        " AND ((n.replaces = 'external_id' AND o.external_id = n.external_id)"
        " OR (n.replaces = 'filename' AND o.filename = n.filename))",
        (list(document_ids),),
    ).rowcount


def callback_urls(conn: psycopg.Connection, document_ids: Sequence[UUID]) -> dict[UUID, str]:
    """The callback URL of each of the documents that has one."""
    rows = conn.execute(
        "SELECT id, callback_url FROM documents WHERE id = ANY(%s) AND callback_url IS NOT NULL"
        " AND callback_url <> ''",
        (list(document_ids),),
    ).fetchall()
    return {document_id: url for document_id, url in rows}


def delete(conn: psycopg.Connection, document_id: UUID) -> str | None:
    """Delete a document with its jobs, chunks and vectors; return its sha256, None if it was gone.

    Its blob may be shared with other documents: `ingest.services.deletion` removes it only when none is left."""
    row = conn.execute("DELETE FROM documents WHERE id = %s RETURNING sha256", (document_id,)).fetchone()
    return None if row is None else str(row[0])
