"""Which documents still need a blob, asked under a lock per blob.

Identical uploads share one blob (its key is the bytes' SHA-256). An upload takes the blob's lock before it
adds its document and keeps it until that commits, with the bytes stored; a delete takes it before it asks
whether any document still names the blob and keeps it while it removes the bytes. So the two take turns: a
removal sees every upload committed before it, and an upload after it stores the bytes again.
"""

from __future__ import annotations

import psycopg

# Class of the per-blob advisory lock (any constant; a hash of the SHA-256 is the object id). Two blobs
# sharing a hash only take turns, which costs nothing.
BLOB_LOCK_CLASS = 0x626C6F62


def lock(conn: psycopg.Connection, sha256: str) -> None:
    """Hold the blob's lock until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (BLOB_LOCK_CLASS, sha256))


def lock_many(conn: psycopg.Connection, sha256s: list[str]) -> None:
    """`lock` for many blobs in one statement, in one order (two uploads sharing blobs take turns)."""
    conn.execute(
        "SELECT count(pg_advisory_xact_lock(%s, hashtext(s))) FROM (SELECT DISTINCT s FROM unnest(%s::text[]) s"
        " ORDER BY s) b",
        (BLOB_LOCK_CLASS, sha256s),
    )


def in_use(conn: psycopg.Connection, sha256: str) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM documents WHERE sha256 = %s)", (sha256,)).fetchone()
    return bool(row and row[0])
