"""Search latency on a database the latency run of search_quality.py loaded, configurations interleaved.

    python bench/search_latency.py --db URL [--user bench-100000] [--queries 100] [--recall]

Every question of the sample corpus's QUESTIONS.json is asked as the user holding the generated chunks, in
each mode, through `ingest.services.search.search` (query embedding included), twice a question: with the
default pool (hybrid reads its two lists at once on two connections) and with a pool of one connection
(both lists on one, one after the other: how hybrid read before). The two alternate question by question,
so the machine's load falls on both alike. Every question is asked once first (hybrid, both pools): the
timed queries then read pages the server has cached, as a server answering steady traffic would. `--recall`: the vector half's recall@20 (hybrid's depth) at
several hnsw.ef_search against an exact scan, with the time of that statement alone; `--binary 200,800`:
the same for the binary-quantized plan at each count of candidates re-ranked (build its index first).
`--queries 0` skips the latency part. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ingest.config import Settings
from ingest.logs import configure_logging
from ingest.search_mode import SearchMode
from ingest.services.search import FUSION_CANDIDATES, search
from ingest.store import vectors
from ingest.store.search import nearest
from ingest.store.users import ensure_user
from workers.runtime import Runtime

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus-sample"


def _percentiles(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 1),
        "p95_ms": round(float(np.percentile(times, 95)), 1),
    }


def latency(
    runtimes: dict[str, Runtime], user_name: str, questions: list[str], queries: int
) -> dict[str, Any]:
    times: dict[str, list[float]] = {}
    with next(iter(runtimes.values())).pool.connection() as conn:
        user = ensure_user(conn, user_name)
    for rt in runtimes.values():  # warm: the pool grown, the space and its size known, pages cached
        for question in questions:
            search(rt, user, question, mode=SearchMode.HYBRID)
    for i in range(queries):
        question = questions[i % len(questions)]
        for mode in SearchMode:
            for name, rt in runtimes.items():
                started = time.perf_counter()
                search(rt, user, question, top_k=5, mode=mode)
                times.setdefault(f"{mode.value} {name}", []).append((time.perf_counter() - started) * 1000)
    return {key: _percentiles(value) for key, value in times.items()}


def recall(
    rt: Runtime, user_name: str, questions: list[str], efs: list[int], reranks: list[int]
) -> dict[str, Any]:
    """recall@20 and time of the halfvec HNSW plan at each ef_search; with `reranks`, of the binary plan
    (its index built beside the halfvec one: `binary_quantize(embedding)::bit(d) bit_hamming_ops`) at
    each number of candidates re-ranked exactly."""
    embedder = rt.router.search_embedder()
    out: dict[str, Any] = {}
    with rt.pool.connection() as conn:
        user = ensure_user(conn, user_name)
        space = vectors.find_space(conn, embedder.model, embedder.dimensions)
        assert space is not None
        query_vectors = embedder.embed(questions).vectors
        exact = [
            {
                h.chunk_id
                for h in nearest(
                    conn, space, q, owner_id=user.id, top_k=FUSION_CANDIDATES, ef_search=40, exact=True
                )
            }
            for q in query_vectors
        ]
        plans = [(f"halfvec ef_search {ef}", space, ef, 0) for ef in efs] + [
            (f"binary {m} re-ranked", replace(space, index_kind="binary"), 40, m) for m in reranks
        ]
        for name, plan_space, ef, rerank in plans:
            found, times = [], []
            for q in query_vectors:
                started = time.perf_counter()
                hits = nearest(
                    conn,
                    plan_space,
                    q,
                    owner_id=user.id,
                    top_k=FUSION_CANDIDATES,
                    ef_search=ef,
                    rerank=rerank,
                )
                times.append((time.perf_counter() - started) * 1000)
                found.append({h.chunk_id for h in hits})
            out[name] = {
                "recall_at_20": round(
                    sum(len(f & e) for f, e in zip(found, exact, strict=True)) / sum(map(len, exact)), 3
                ),
                **_percentiles(times),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--user", default="bench-100000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--recall", action="store_true")
    parser.add_argument(
        "--binary", default="", help="comma-separated candidate counts: the binary plan's recall (--recall)"
    )
    args = parser.parse_args()
    questions = [q["question"] for q in json.loads((args.corpus / "QUESTIONS.json").read_text())["questions"]]
    home = Path(tempfile.mkdtemp(prefix="search-latency-"))
    result: dict[str, Any] = {}
    configure_logging(
        Settings(_env_file=None, database_url=args.db, home=home), interactive=False, quiet=True
    )
    with (
        Runtime.open(Settings(_env_file=None, database_url=args.db, home=home)) as rt,
        Runtime.open(Settings(_env_file=None, database_url=args.db, home=home, db_pool_max=1)) as alone,
    ):
        with rt.pool.connection() as conn:
            result["server"] = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in ("shared_buffers", "effective_cache_size", "work_mem")
            }
        if args.queries:
            result["latency"] = latency(
                {"two connections": rt, "one connection": alone}, args.user, questions, args.queries
            )
        if args.recall:
            result["vector_recall"] = recall(
                rt,
                args.user,
                questions,
                [40, 100, 200, 400, 1000],
                [int(m) for m in args.binary.split(",") if m],
            )
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
