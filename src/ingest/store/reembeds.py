"""Runs of `ingest reembed`: the chunks a run still has to embed, its progress, its state.

A chunk is owed to the run while it is in the source space (`chunks.space_id`) and has no vector in the
target table: the target's vectors are the run's progress, so a run resumed after a kill embeds only
what is missing and never writes a chunk's vector twice (the table's key is the chunk).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import psycopg
from psycopg import sql

from ingest.db.rows import scalar
from ingest.store.vectors import Space

_COLUMNS = (
    "id, source_space_id, target_space_id, rollback, status, chunks_total, quoted_usd, step,"
    " waiting_reason, created_at, switched_at, cursor, embed_route, batch_fallback"
)


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    source_space_id: int
    target_space_id: int
    rollback: bool
    status: str  # building | switched | cancelled | superseded | failed
    chunks_total: int
    quoted_usd: Decimal
    step: int
    waiting_reason: str | None
    created_at: datetime
    switched_at: datetime | None
    cursor: int  # the last chunk id a batch took
    embed_route: str  # 'sync' | 'batch' (the Batch API: --when-cheapest)
    batch_fallback: str  # 'batch' | 'sync': where inputs a batch did not embed go


@dataclass(frozen=True, slots=True)
class Owed:
    """A distinct text a run still has to embed, per owner: one of its chunks stands for the rest."""

    owner_id: int
    text_hash: bytes
    tokens: int
    cached: bool  # the target's embedding cache holds it for the owner: copied, not paid for


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    text: str
    token_count: int
    text_hash: bytes


def _missing(source: Space, target: Space) -> sql.Composed:
    return sql.SQL(
        "FROM chunks c WHERE c.space_id = {s} AND NOT EXISTS (SELECT 1 FROM {t} v WHERE v.chunk_id = c.id)"
    ).format(s=sql.Literal(source.id), t=target.table)


def owed(conn: psycopg.Connection, source: Space, target: Space) -> list[Owed]:
    """The distinct (owner, text) pairs still to embed into `target`, and whether its cache has each."""
    rows = conn.execute(
        sql.SQL(
            "SELECT d.owner_id, c.text_hash, max(c.token_count), EXISTS (SELECT 1 FROM embedding_cache e"
            "  WHERE e.space_id = {tid} AND e.owner_id = d.owner_id AND e.text_hash = c.text_hash)"
            " FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE c.space_id = {sid} AND NOT EXISTS (SELECT 1 FROM {t} v WHERE v.chunk_id = c.id)"
            " GROUP BY d.owner_id, c.text_hash"
        ).format(tid=sql.Literal(target.id), sid=sql.Literal(source.id), t=target.table)
    ).fetchall()
    return [Owed(o, bytes(h), n, cached) for o, h, n, cached in rows]


def missing_count(conn: psycopg.Connection, source: Space, target: Space) -> int:
    return scalar(conn.execute(sql.SQL("SELECT count(*) ") + _missing(source, target)))


def in_space(conn: psycopg.Connection, space: Space) -> int:
    return scalar(conn.execute("SELECT count(*) FROM chunks WHERE space_id = %s", (space.id,)))


def next_batch(
    conn: psycopg.Connection, source: Space, target: Space, limit: int, *, after: int = 0
) -> tuple[UUID, list[Pending]] | None:
    """Up to `limit` chunks still owed of the first document with one past chunk id `after` (one
    document a batch: its cost is the document's). Chunks in a Batch API batch still out are left to it."""
    unbatched = sql.SQL(" AND NOT EXISTS (SELECT 1 FROM embedding_batch_items i WHERE i.chunk_id = c.id)")
    first = conn.execute(
        sql.SQL("SELECT c.document_id ")
        + _missing(source, target)
        + unbatched
        + sql.SQL(" AND c.id > %s ORDER BY c.id LIMIT 1"),
        (after,),
    ).fetchone()
    if first is None:
        return None
    rows = conn.execute(
        sql.SQL("SELECT c.id, c.text, c.token_count, c.text_hash ")
        + _missing(source, target)
        + unbatched
        + sql.SQL(" AND c.document_id = %s ORDER BY c.id LIMIT %s"),
        (first[0], limit),
    ).fetchall()
    return first[0], [Pending(i, t, n, bytes(h)) for i, t, n, h in rows]


def create(
    conn: psycopg.Connection,
    source: Space,
    target: Space,
    *,
    chunks_total: int,
    quoted_usd: Decimal,
    rollback: bool,
    embed_route: str = "sync",
    batch_fallback: str = "batch",
) -> Run:
    row = conn.execute(
        "INSERT INTO reembeds (source_space_id, target_space_id, chunks_total, quoted_usd, rollback,"
        f" embed_route, batch_fallback) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (source.id, target.id, chunks_total, quoted_usd, rollback, embed_route, batch_fallback),
    ).fetchone()
    assert row is not None
    return Run(*row)


def get(conn: psycopg.Connection, run_id: int) -> Run | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM reembeds WHERE id = %s", (run_id,)).fetchone()
    return Run(*row) if row else None


def building(conn: psycopg.Connection) -> Run | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM reembeds WHERE status = 'building'").fetchone()
    return Run(*row) if row else None


def latest(conn: psycopg.Connection) -> Run | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM reembeds ORDER BY id DESC LIMIT 1").fetchone()
    return Run(*row) if row else None


def advance(
    conn: psycopg.Connection,
    run_id: int,
    step: int,
    *,
    waiting: str | None = None,
    cursor: int | None = None,
    delay_s: int = 0,
    keep_waiting: bool = False,
) -> int | None:
    """Move the run from `step` to the next (its message is the next one sent, after `delay_s`), and its
    cursor when given; None when `step` is stale (another message took over) or the run is no longer
    building. A delayed step counts as touched until it is due: the sweeper leaves it alone till then.
    `keep_waiting`: a reason already recorded (by the batch tender: the budget) stays, else `waiting`."""
    row = conn.execute(
        "UPDATE reembeds SET step = step + 1, touched_at = now() + make_interval(secs => %s),"
        " waiting_reason = CASE WHEN %s THEN coalesce(waiting_reason, %s) ELSE %s END,"
        " cursor = coalesce(%s, cursor)"
        " WHERE id = %s AND step = %s AND status = 'building' RETURNING step",
        (delay_s, keep_waiting, waiting, waiting, cursor, run_id, step),
    ).fetchone()
    return None if row is None else row[0]


def stalled(conn: psycopg.Connection, idle_s: float) -> list[tuple[int, int]]:
    """Building runs untouched for `idle_s` (their message lost, or their worker killed): each moved to
    a new step, whose message the caller sends; a late message of the old step then does nothing."""
    rows = conn.execute(
        "UPDATE reembeds SET step = step + 1, touched_at = now()"
        " WHERE status = 'building' AND touched_at <= now() - make_interval(secs => %s) RETURNING id, step",
        (idle_s,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def finish(conn: psycopg.Connection, run_id: int, status: str) -> None:
    conn.execute(
        "UPDATE reembeds SET status = %s, touched_at = now(), waiting_reason = NULL,"
        " switched_at = CASE WHEN %s = 'switched' THEN now() END WHERE id = %s",
        (status, status, run_id),
    )


def note_waiting(conn: psycopg.Connection, run_id: int, reason: str | None) -> None:
    """Why a building run waits, said by another than its step (the batch tender); its step unchanged."""
    conn.execute(
        "UPDATE reembeds SET waiting_reason = %s WHERE id = %s AND status = 'building'", (reason, run_id)
    )


def go_sync(conn: psycopg.Connection, run_id: int) -> None:
    """The run leaves the batch route: its steps embed what is left through the endpoint."""
    conn.execute("UPDATE reembeds SET embed_route = 'sync' WHERE id = %s", (run_id,))


def fail(conn: psycopg.Connection, run_id: int, reason: str) -> bool:
    """End a building run `failed`, saying why; False when it was not building."""
    return (
        conn.execute(
            "UPDATE reembeds SET status = 'failed', waiting_reason = %s, touched_at = now()"
            " WHERE id = %s AND status = 'building'",
            (reason, run_id),
        ).rowcount
        == 1
    )
