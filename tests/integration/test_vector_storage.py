"""A space's vectors are stored in their rows, not in TOAST: an exact scan then reads a sixth of the
buffers (docs/benchmarks.md)."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from ingest.chunking import Chunk
from ingest.store import chunks, vectors
from ingest.store.users import ensure_user
from workers.runtime import Runtime


def _stored(conn: psycopg.Connection, dimensions: int) -> tuple[vectors.Space, np.ndarray]:
    """Three vectors of `dimensions` written to a new space, for chunks of one document."""
    user = ensure_user(conn, "local")
    space = vectors.ensure_space(conn, f"storage-{dimensions}", dimensions, simulated=True)
    rng = np.random.default_rng(dimensions)
    written = rng.standard_normal((3, dimensions)).astype(np.float32)
    with conn.transaction():
        doc = conn.execute(
            "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, status)"
            " VALUES (%s, %s, 'v.txt', 'text/plain', 1, 'completed') RETURNING id",
            (user.id, f"storage-{dimensions}"),
        ).fetchone()[0]
        chunks.replace(conn, doc, [Chunk(i, f"chunk {i}", 2, {}) for i in range(3)])
        ids = [
            r[0]
            for r in conn.execute("SELECT id FROM chunks WHERE document_id = %s ORDER BY ordinal", (doc,))
        ]
        vectors.write(conn, space, ids, written)
    return space, written


def _toasted_bytes(conn: psycopg.Connection, space: vectors.Space) -> int:
    row = conn.execute(
        "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = %s::regclass", (space.table_name,)
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("dimensions", [1536, 4000])  # 3 kB a vector, and the largest a space allows
def test_vectors_stay_in_their_rows(rt: Runtime, dimensions: int) -> None:
    with rt.pool.connection() as conn:
        space, written = _stored(conn, dimensions)
        assert _toasted_bytes(conn, space) == 0  # the default 2 kB target sent both to TOAST
        read = conn.execute(f"SELECT embedding::real[] FROM {space.table_name} ORDER BY chunk_id").fetchall()
    np.testing.assert_allclose(np.array([r[0] for r in read]), written.astype(np.float16), rtol=1e-3)
