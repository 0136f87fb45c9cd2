"""Chunks of a document's text, written with binary COPY."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from ingest import language
from ingest.db.rows import scalar

if TYPE_CHECKING:  # for annotations only: chunking loads the tokenizer, which reading chunks never needs
    from ingest.chunking import Chunk


def text_hash(text: str) -> bytes:
    """Identity of a chunk's content: whitespace-insensitive, so re-flowed text is the same chunk."""
    return hashlib.sha256(" ".join(text.split()).encode()).digest()


@dataclass(frozen=True, slots=True)
class StoredChunk:
    id: int
    ordinal: int
    text: str
    token_count: int  # exact cl100k_base count: what embedding the text bills, without encoding again
    text_hash: bytes  # the key of the embedding cache


@dataclass(frozen=True, slots=True)
class ChunkView:
    """A chunk as its owner reads it: the text with where it came from (pages, headings)."""

    id: int
    ordinal: int
    text: str
    token_count: int
    metadata: dict[str, object]


def replace(conn: psycopg.Connection, document_id: UUID, chunks: Sequence[Chunk]) -> None:
    """Make `chunks` the document's only chunks (a re-run replaces, never duplicates). PostgreSQL derives
    their keyword index from the text, read in the document's language (ingest/language.py)."""
    replace_many(conn, {document_id: chunks})


def replace_many(conn: psycopg.Connection, pieces: Mapping[UUID, Sequence[Chunk]]) -> None:
    """`replace` for many documents: one DELETE and one COPY for all of them (and one look-up of the
    languages they are read in; a regconfig travels as its oid)."""
    if not pieces:
        return
    configs = {doc: language.detect("\n".join(c.text for c in chunks[:8])) for doc, chunks in pieces.items()}
    names = sorted(set(configs.values()))
    oids: dict[str, int] = dict(
        conn.execute("SELECT c, c::regconfig::oid FROM unnest(%s::text[]) AS c", (names,)).fetchall()
    )
    conn.execute("DELETE FROM chunks WHERE document_id = ANY(%s)", (list(pieces),))
    with conn.cursor().copy(
        "COPY chunks (document_id, ordinal, text, token_count, text_hash, metadata, start_key, search_config,"
        " search_text) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["uuid", "int4", "text", "int4", "bytea", "jsonb", "bytea", "oid", "text"])
        for document_id, chunks in pieces.items():
            config_oid = oids[configs[document_id]]
            for chunk in chunks:
                copy.write_row(
                    (
                        document_id,
                        chunk.ordinal,
                        chunk.text,
                        chunk.token_count,
                        text_hash(chunk.text),
                        Jsonb(chunk.metadata),
                        chunk.start_key or None,
                        config_oid,
                        language.search_text(chunk.text),
                    )
                )


def anchors_of_many(conn: psycopg.Connection, document_ids: Sequence[UUID]) -> dict[UUID, set[bytes]]:
    """`anchors_of_replaced` for many documents in one query (a document without any is left out)."""
    rows = conn.execute(
        "SELECT n.id, c.start_key FROM documents n JOIN documents o ON o.owner_id = n.owner_id"
        " AND o.id <> n.id AND o.created_at < n.created_at"
        " AND ((n.replaces = 'external_id' AND o.external_id = n.external_id)"
        " OR (n.replaces = 'filename' AND o.filename = n.filename))"
        " JOIN chunks c ON c.document_id = o.id WHERE n.id = ANY(%s) AND c.start_key IS NOT NULL",
        (list(document_ids),),
    ).fetchall()
    found: dict[UUID, set[bytes]] = {}
    for document_id, key in rows:
        found.setdefault(document_id, set()).add(bytes(key))
    return found


def anchors_of_replaced(conn: psycopg.Connection, document_id: UUID) -> set[bytes]:
    """Where the chunks of the versions this document replaces start (see documents.supersede), so its
    own chunks can end at the same places and an edit re-embeds only what it touched."""
    rows = conn.execute(
        "SELECT c.start_key FROM documents n JOIN documents o ON o.owner_id = n.owner_id AND o.id <> n.id"
        " AND o.created_at < n.created_at"
        " AND ((n.replaces = 'external_id' AND o.external_id = n.external_id)"
        " OR (n.replaces = 'filename' AND o.filename = n.filename))"
        " JOIN chunks c ON c.document_id = o.id WHERE n.id = %s AND c.start_key IS NOT NULL",
        (document_id,),
    ).fetchall()
    return {bytes(r[0]) for r in rows}


def count(conn: psycopg.Connection, document_id: UUID) -> int:
    return scalar(conn.execute("SELECT count(*) FROM chunks WHERE document_id = %s", (document_id,)))


def pending_in_range(conn: psycopg.Connection, document_id: UUID, first: int, last: int) -> list[StoredChunk]:
    """Chunks with ordinals in [first, last] that have no vector yet, in order."""
    rows = conn.execute(
        "SELECT id, ordinal, text, token_count, text_hash FROM chunks"
        " WHERE document_id = %s AND ordinal BETWEEN %s AND %s"
        " AND space_id IS NULL ORDER BY ordinal",
        (document_id, first, last),
    ).fetchall()
    return [StoredChunk(i, o, t, n, bytes(h)) for i, o, t, n, h in rows]


def pending_for_jobs(
    conn: psycopg.Connection, job_ids: Sequence[UUID]
) -> dict[UUID, tuple[UUID, list[StoredChunk]]]:
    """For each running job among `job_ids`: its document and the chunks without a vector, in order (one
    round trip for a batch of documents)."""
    rows = conn.execute(
        "SELECT j.id, j.document_id, c.id, c.ordinal, c.text, c.token_count, c.text_hash FROM jobs j"
        " LEFT JOIN chunks c ON c.document_id = j.document_id AND c.space_id IS NULL"
        " WHERE j.id = ANY(%s) AND j.status = 'running' ORDER BY j.id, c.ordinal",
        (list(job_ids),),
    ).fetchall()
    found: dict[UUID, tuple[UUID, list[StoredChunk]]] = {}
    for job_id, document_id, i, o, t, n, h in rows:
        _, pending = found.setdefault(job_id, (document_id, []))
        if i is not None:
            pending.append(StoredChunk(i, o, t, n, bytes(h)))
    return found


def missing_ordinals(conn: psycopg.Connection, document_id: UUID) -> list[int]:
    rows = conn.execute(
        "SELECT ordinal FROM chunks WHERE document_id = %s AND space_id IS NULL ORDER BY ordinal",
        (document_id,),
    ).fetchall()
    return [r[0] for r in rows]


def mark_embedded(conn: psycopg.Connection, chunk_ids: Sequence[int], space_id: int) -> None:
    conn.execute("UPDATE chunks SET space_id = %s WHERE id = ANY(%s)", (space_id, list(chunk_ids)))


def delete_for_document(conn: psycopg.Connection, document_id: UUID) -> None:
    conn.execute("DELETE FROM chunks WHERE document_id = %s", (document_id,))


def counts(conn: psycopg.Connection, document_ids: Sequence[UUID]) -> dict[UUID, int]:
    """Chunks per document, for many documents in one query (documents without chunks are left out)."""
    rows = conn.execute(
        "SELECT document_id, count(*) FROM chunks WHERE document_id = ANY(%s) GROUP BY document_id",
        (list(document_ids),),
    ).fetchall()
    return {document_id: n for document_id, n in rows}


def page_of(conn: psycopg.Connection, document_id: UUID, *, limit: int, offset: int) -> list[ChunkView]:
    """A document's chunks in reading order, one page of them."""
    rows = conn.execute(
        "SELECT id, ordinal, text, token_count, metadata FROM chunks WHERE document_id = %s"
        " ORDER BY ordinal LIMIT %s OFFSET %s",
        (document_id, limit, offset),
    ).fetchall()
    return [ChunkView(*row) for row in rows]
