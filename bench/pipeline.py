"""Pipeline throughput on a generated corpus, in one run on one embedded PostgreSQL:

- the whole pipeline (submit → parse → chunk → embed with the mock embedder → store), chunks/s;
- the store stage alone (this project's `vectors.write`, binary COPY into the space table, HNSW live);
- a raw binary COPY of the same rows into an identical bare table (same index): the floor.

The ratio store/raw is what matters: it is the overhead our store stage adds over the database itself.
Usage: python bench/pipeline.py [--docs 100] [--paragraphs 40] [--dims 1536]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from pgvector import HalfVector
from psycopg import sql

from ingest.config import Settings
from ingest.logs import configure_logging
from ingest.services.submit import submit_file
from ingest.store import vectors
from ingest.store.users import ensure_user
from workers.inprocess import serving
from workers.runtime import Runtime

VOCABULARY = (
    "vector index query latency throughput chunk token embedding document parser budget ledger worker queue "
    "retry batch store search recall cosine postgres replica schema migration webhook callback signature "
    "tenant upload stream memory process thread broker message stage failure deadline vendor price"
).split()


def generate_corpus(folder: Path, docs: int, paragraphs: int, seed: int = 7) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for d in range(docs):
        parts = [f"# Report {d}"]
        for p in range(paragraphs):
            words = rng.choices(VOCABULARY, k=rng.randint(60, 140))
            parts.append(f"Section {p} of report {d}. " + " ".join(words) + ".")
        path = folder / f"report-{d:05d}.md"
        path.write_text("\n\n".join(parts))
        paths.append(path)
    return paths


def wait_for(rt: Runtime, job_ids: list) -> None:
    while True:
        with rt.pool.connection() as conn:
            open_jobs = conn.execute(
                "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status NOT IN ('completed', 'failed')",
                (job_ids,),
            ).fetchone()[0]
        if open_jobs == 0:
            return
        time.sleep(0.05)


def bench_pipeline(rt: Runtime, paths: list[Path]) -> tuple[int, float]:
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "bench")
    started = time.perf_counter()
    with serving(rt, threads=rt.settings.worker_threads):
        submitted = [submit_file(rt, p, user=user) for p in paths]
        wait_for(rt, [s.job_id for s in submitted])
    elapsed = time.perf_counter() - started
    with rt.pool.connection() as conn:
        chunks = conn.execute("SELECT count(*) FROM chunks WHERE space_id IS NOT NULL").fetchone()[0]
        failed = conn.execute("SELECT count(*) FROM jobs WHERE status = 'failed'").fetchone()[0]
    if failed:
        raise SystemExit(f"{failed} jobs failed during the benchmark")
    return chunks, elapsed


def stored_rows(rt: Runtime) -> tuple[list[int], np.ndarray]:
    """The chunk ids and vectors the pipeline stored, to replay through both store paths."""
    with rt.pool.connection() as conn:
        space = conn.execute("SELECT table_name FROM embedding_spaces LIMIT 1").fetchone()[0]
        rows = conn.execute(
            sql.SQL("SELECT chunk_id, embedding FROM {} ORDER BY chunk_id").format(sql.Identifier(space))
        )
        ids, vecs = [], []
        for chunk_id, embedding in rows:
            ids.append(chunk_id)
            vecs.append(embedding.to_numpy())
    return ids, np.vstack(vecs).astype(np.float32)


def bench_store_stage(rt: Runtime, ids: list[int], vecs: np.ndarray, batch: int) -> float:
    with rt.pool.connection() as conn:
        space = vectors.ensure_space(conn, "bench-store", vecs.shape[1], simulated=True)
    started = time.perf_counter()
    for i in range(0, len(ids), batch):
        with rt.pool.connection() as conn, conn.transaction():
            vectors.write(conn, space, ids[i : i + batch], vecs[i : i + batch])
    return time.perf_counter() - started


def bench_raw_copy(rt: Runtime, ids: list[int], vecs: np.ndarray, batch: int) -> float:
    dims = vecs.shape[1]
    with rt.pool.connection() as conn:
        conn.execute(
            f"CREATE TABLE raw_copy (chunk_id bigint PRIMARY KEY, embedding halfvec({dims}) NOT NULL)"
        )
        conn.execute(
            f"CREATE INDEX ON raw_copy USING hnsw (embedding halfvec_cosine_ops)"
            f" WITH (m = {vectors.HNSW_M}, ef_construction = {vectors.HNSW_EF_CONSTRUCTION})"
        )
    halves = vecs.astype(np.float16)
    started = time.perf_counter()
    for i in range(0, len(ids), batch):
        with (
            rt.pool.connection() as conn,
            conn.transaction(),
            conn.cursor().copy("COPY raw_copy (chunk_id, embedding) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["int8", "halfvec"])
            for chunk_id, vector in zip(ids[i : i + batch], halves[i : i + batch], strict=True):
                copy.write_row((chunk_id, HalfVector(vector)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--paragraphs", type=int, default=40)
    parser.add_argument("--dims", type=int, default=1536)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        home = Path(tmp)
        corpus = home / "corpus"
        corpus.mkdir()
        paths = generate_corpus(corpus, args.docs, args.paragraphs)
        settings = Settings(_env_file=None, home=home / "home", mock_embedding_dimensions=args.dims)
        configure_logging(settings, interactive=True, quiet=True)
        with Runtime.open(settings) as rt:
            chunks, pipeline_s = bench_pipeline(rt, paths)
            ids, vecs = stored_rows(rt)
            store_s = bench_store_stage(rt, ids, vecs, settings.embed_batch_chunks)
            raw_s = bench_raw_copy(rt, ids, vecs, settings.embed_batch_chunks)

    print(
        f"corpus: {args.docs} documents, {chunks} chunks of up to {settings.chunk_tokens} tokens, {args.dims}-d"
    )
    print(f"whole pipeline   : {chunks / pipeline_s:9.1f} chunks/s  ({pipeline_s:.2f} s)")
    print(f"store stage      : {len(ids) / store_s:9.1f} rows/s    ({store_s:.2f} s, HNSW live)")
    print(f"raw binary COPY  : {len(ids) / raw_s:9.1f} rows/s    ({raw_s:.2f} s, HNSW live)")
    print(f"store / raw COPY : {raw_s / store_s:9.2f}x  (1.00 = no overhead over the database)")


if __name__ == "__main__":
    main()
