"""How long `ingest reembed`'s switch holds the active space: the transaction that moves every chunk to
the new space (their keyword counts follow, by trigger) and the active row, on a fresh embedded
PostgreSQL. Embedding batches of new documents wait for it; searches do not (they read their snapshot).

    .venv/bin/python bench/reembed_switch.py 20000
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from ingest.chunking import Chunk
from ingest.db import embedded, migrate
from ingest.store import chunks, spaces, vectors

PER_DOCUMENT = 100
WORDS = "glacier volcano tide river harbour lantern quartz meadow orbit signal".split()


def main(total: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="reembed-bench-"))
    with embedded.hold(folder / "pgdata") as uri:
        migrate.apply(uri)
        with psycopg.connect(uri, autocommit=True) as conn:
            register_vector(conn)
            owner = conn.execute("INSERT INTO users (name) VALUES ('bench') RETURNING id").fetchone()[0]  # type: ignore[index]
            old = vectors.ensure_space(conn, "text-embedding-3-small", 64, simulated=False)
            new = vectors.ensure_space(conn, "text-embedding-3-large", 64, simulated=False)
            rng = np.random.default_rng(1)
            for d in range(total // PER_DOCUMENT):
                doc = conn.execute(
                    "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, status)"
                    " VALUES (%s, %s, 'f.txt', 'text/plain', 1, 'completed') RETURNING id",
                    (owner, uuid.uuid4().hex),
                ).fetchone()[0]  # type: ignore[index]
                pieces = [
                    Chunk(i, " ".join(rng.choice(WORDS, 40)) + f" doc{d} piece{i}", 45, {})
                    for i in range(PER_DOCUMENT)
                ]
                with conn.transaction():
                    chunks.replace(conn, doc, pieces)
                    ids = [r[0] for r in conn.execute("SELECT id FROM chunks WHERE document_id = %s", (doc,))]
                    for space in (old, new):
                        vectors.write(
                            conn, space, ids, rng.standard_normal((len(ids), 64)).astype(np.float32)
                        )
                    chunks.mark_embedded(conn, ids, old.id)
            for label, (source, target) in (("switch", (old, new)), ("rollback", (new, old))):
                started = time.perf_counter()
                with conn.transaction():
                    spaces.lock(conn)
                    moved = spaces.switch(conn, source, target)
                print(f"{label}: {moved} chunks moved in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
