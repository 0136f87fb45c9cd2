"""The active embedding space: one row naming the real space every search reads and every embedding
batch writes, and the space a switch left (kept until dropped, so a switch can be undone).

A switch is one transaction that locks the row (`lock`); a batch that stores real vectors reads it
shared in its own transaction (`check_writable`), so a batch either stores before a switch (which then
sees its chunks) or finds the switch done and stores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ingest.store.vectors import Space, get_space


class SpaceSwitched(Exception):
    """The active space changed while a batch embedded: its vectors belong to a space searches left."""


@dataclass(frozen=True, slots=True)
class Active:
    space_id: int | None
    previous_space_id: int | None


def active(conn: psycopg.Connection) -> Active:
    row = conn.execute("SELECT space_id, previous_space_id FROM active_space").fetchone()
    return Active(*row) if row else Active(None, None)


def active_space(conn: psycopg.Connection) -> Space | None:
    space_id = active(conn).space_id
    return None if space_id is None else get_space(conn, space_id)


def lock(conn: psycopg.Connection) -> Active:
    """The row, locked until the transaction ends: a switch holds it while it verifies and moves."""
    row = conn.execute("SELECT space_id, previous_space_id FROM active_space FOR UPDATE").fetchone()
    assert row is not None  # migration 0015 inserts it
    return Active(*row)


def check_writable(conn: psycopg.Connection, space: Space) -> None:
    """Inside the transaction that stores vectors in `space`: a real space that is not the active one
    raises SpaceSwitched; the first real space stored in becomes the active one. Mock spaces pass."""
    if space.simulated:
        return
    # Claim an empty row before reading it shared: two first batches that both read it empty under a
    # shared lock and then both tried to write it would deadlock. Once set, this UPDATE matches nothing
    # and locks nothing.
    conn.execute("UPDATE active_space SET space_id = %s WHERE space_id IS NULL", (space.id,))
    row = conn.execute("SELECT space_id FROM active_space FOR SHARE").fetchone()
    assert row is not None
    if row[0] != space.id:
        raise SpaceSwitched(
            f"searches moved to space {row[0]} while this batch embedded for {space.table_name}"
        )


def switch(conn: psycopg.Connection, source: Space, target: Space) -> int:
    """Make `target` active in place of `source`, moving every chunk of `source` to it (their keyword
    index follows, by trigger); call inside a transaction holding `lock`. Returns the chunks moved."""
    moved = conn.execute(
        "UPDATE chunks SET space_id = %s WHERE space_id = %s", (target.id, source.id)
    ).rowcount
    conn.execute(
        "UPDATE active_space SET space_id = %s, previous_space_id = %s, switched_at = now()",
        (target.id, source.id),
    )
    return moved


def forget_previous(conn: psycopg.Connection) -> None:
    conn.execute("UPDATE active_space SET previous_space_id = NULL")
