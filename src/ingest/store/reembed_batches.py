"""A reembed run's inputs on the batch route (`ingest reembed --when-cheapest`, migration 0016).

An input of a run is a chunk of its source still without a vector in its target: one chunk per distinct
(owner, text), the others of that text copied from the target's embedding cache once its vector is
there. Plain functions over a connection; callers own transactions.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from ingest.db.rows import scalar
from ingest.store.embedding_batches import ITEM_SELECT, Item, Waiting
from ingest.store.vectors import Space


def _missing(source: Space, target: Space) -> sql.Composed:
    return sql.SQL(
        "SELECT c.id, c.text_hash, c.token_count, d.owner_id FROM chunks c"
        " JOIN documents d ON d.id = c.document_id"
        " WHERE c.space_id = {s} AND NOT EXISTS (SELECT 1 FROM {t} v WHERE v.chunk_id = c.id)"
    ).format(s=sql.Literal(source.id), t=target.table)


def missing_ids(conn: psycopg.Connection, source: Space, target: Space) -> list[int]:
    return [r[0] for r in conn.execute(_missing(source, target))]


def queue(conn: psycopg.Connection, run_id: int, source: Space, target: Space) -> int:
    """Queue one chunk of each (owner, text) the target still lacks and no input of the run already
    carries; return how many were queued now. Call after copying what the cache holds."""
    return conn.execute(
        sql.SQL(
            "WITH missing AS ({missing}), queued AS ("
            "  SELECT d.owner_id, c.text_hash FROM embedding_batch_items i JOIN chunks c ON c.id = i.chunk_id"
            "  JOIN documents d ON d.id = c.document_id WHERE i.run_id = %(run)s)"
            " INSERT INTO embedding_batch_items (chunk_id, run_id, tokens)"
            " SELECT DISTINCT ON (m.owner_id, m.text_hash) m.id, %(run)s, m.token_count FROM missing m"
            " WHERE NOT EXISTS (SELECT 1 FROM queued q WHERE q.owner_id = m.owner_id AND q.text_hash = m.text_hash)"
            " ORDER BY m.owner_id, m.text_hash, m.id"
            " ON CONFLICT (chunk_id) DO NOTHING"
        ).format(missing=_missing(source, target)),
        {"run": run_id},
    ).rowcount


def outstanding(conn: psycopg.Connection, run_id: int) -> int:
    """The run's inputs not embedded yet: waiting for a batch or in one."""
    return int(
        scalar(conn.execute("SELECT count(*) FROM embedding_batch_items WHERE run_id = %s", (run_id,)))
    )


def pending(conn: psycopg.Connection) -> list[Item]:
    """Inputs of building runs waiting for a batch, a run's together."""
    return (
        conn.cursor(row_factory=class_row(Item))
        .execute(
            f"{ITEM_SELECT} JOIN reembeds r ON r.id = i.run_id WHERE i.batch_id IS NULL AND r.status = 'building'"
            " ORDER BY i.run_id, i.chunk_id"
        )
        .fetchall()
    )


def drop_unsent(conn: psycopg.Connection, run_id: int, also: list[int] | None = None) -> None:
    """The run's inputs not in a batch leave the batch route (and `also`, of a batch that is done); those
    in a batch still out stay until it is collected, which charges them."""
    conn.execute(
        "DELETE FROM embedding_batch_items WHERE run_id = %s AND (batch_id IS NULL OR chunk_id = ANY(%s))",
        (run_id, also or []),
    )


def waiting(conn: psycopg.Connection, run_id: int) -> Waiting | None:
    """The batch the run waits for (the one sent last); None when it has no input on the batch route."""
    row = conn.execute(
        "SELECT b.vendor_batch_id, b.expires_at FROM embedding_batch_items i"
        " LEFT JOIN embedding_batches b ON b.id = i.batch_id WHERE i.run_id = %s"
        " ORDER BY b.created_at DESC NULLS LAST LIMIT 1",
        (run_id,),
    ).fetchone()
    return None if row is None else Waiting(row[0], row[1])
