"""Bulk loads: a space's HNSW index is dropped while a large backlog loads and built once it drains.

- Before a batch writes its vectors (`before_write`), a space with a live index is checked against
  the backlog (workers/bulk_policy.py decides); when loading bare pays, the index is dropped under the
  space's index lock. Searches read the table exactly meanwhile: slower, never wrong.
- After a batch commits (`after_write`), a deferred space whose backlog has drained sends
  `build_vector_index`. Every batch checks after its own commit, so the last ones to commit see the
  backlog drained; two that both see it send two messages, and the second finds the index built.
- The build (`build_vector_index`) holds the index lock, checks the backlog again, builds the index in
  one pass (writers arriving meanwhile wait for it, searches do not) and marks the space indexed in
  the same commit. While the index stays deferred the build is re-checked every `RECHECK_S`, so jobs
  that end by failing (no batch commits after them) or a stream that never drains still get it built.
"""

from __future__ import annotations

import psycopg
import structlog

from ingest.db.pool import autocommit
from ingest.store import jobs, vectors
from ingest.store.vectors import Space
from workers import messages
from workers.bulk_policy import Backlog, BulkPolicy
from workers.middleware.context import current_runtime
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

RECHECK_S = 60
MAX_RETRIES = 3
# An index build over millions of vectors takes long; it is one statement and cannot resume.
BUILD_TIME_LIMIT_MS = 6 * 3600 * 1000


def policy(rt: Runtime) -> BulkPolicy:
    s = rt.settings
    return BulkPolicy(
        min_chunks=s.bulk_min_chunks, table_ratio=s.bulk_table_ratio, max_defer_s=s.bulk_max_defer_s
    )


def _backlog(conn: psycopg.Connection) -> int:
    return Backlog(*jobs.backlog(conn)).estimated_chunks()


def before_write(rt: Runtime, space: Space) -> Space:
    """The space as its next write finds it, with the index dropped first when the backlog is large.
    `space` was read during this batch: its state is the one to decide on (the drop re-reads it locked)."""
    rules = policy(rt)
    if rules.min_chunks == 0 or space.index_deferred:
        return space
    current = space
    with autocommit(rt.pool) as conn:  # reads, then the drop in a transaction of its own
        backlog = _backlog(conn)
        if not rules.worth_trying(backlog):
            return current
        rows = vectors.rows_up_to(conn, current, rules.rows_that_matter(backlog))
        if not rules.defer_index(backlog, rows):
            return current
        with conn.transaction():
            deferred = vectors.defer_index(conn, current)
    log.info("index_deferred", space=space.table_name, backlog_chunks=backlog, table_rows=rows)
    messages.actor(messages.BUILD_VECTOR_INDEX).send_with_options(
        kwargs={"space_id": space.id}, delay=RECHECK_S * 1000
    )
    return deferred


def after_write(rt: Runtime, space: Space) -> None:
    """After a batch committed into a deferred space: build the index if the backlog has drained."""
    if not space.index_deferred:
        return
    with autocommit(rt.pool) as conn:  # reads only
        if not policy(rt).build_now(vectors.deferred_seconds(conn, space.id), _backlog(conn)):
            return
    messages.actor(messages.BUILD_VECTOR_INDEX).send(space_id=space.id)


def build_if_drained(rt: Runtime, space_id: int) -> str:
    """Build the space's deferred index if its backlog has drained; return what happened."""
    with rt.pool.connection() as conn, conn.transaction():
        space = vectors.get_space(conn, space_id)
        if space is None or not space.index_deferred:
            return "indexed"
        space = vectors.lock_index(conn, space)
        if not space.index_deferred:
            return "indexed"
        if not policy(rt).build_now(vectors.deferred_seconds(conn, space.id), _backlog(conn)):
            return "waiting"
        vectors.build_index(conn, space, memory_mb=rt.settings.index_build_memory_mb)
    log.info("index_built", space=space.table_name)
    return "built"


def build_drained(rt: Runtime) -> None:
    """Build, here and now, every deferred index whose backlog has drained: a process that ran the jobs
    itself calls this before its workers stop, since the messages it queued stop with them."""
    with autocommit(rt.pool) as conn:
        deferred = vectors.deferred_space_ids(conn)
    for space_id in deferred:
        build_if_drained(rt, space_id)


def build_vector_index(space_id: int) -> None:
    # Sent with keyword arguments only: job middleware reads a first positional argument as a job id.
    rt = current_runtime()
    if build_if_drained(rt, space_id) == "waiting":
        messages.actor(messages.BUILD_VECTOR_INDEX).send_with_options(
            kwargs={"space_id": space_id}, delay=RECHECK_S * 1000
        )
