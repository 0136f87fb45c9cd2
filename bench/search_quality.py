"""Search quality and latency: the sample corpus's questions and facts in every mode, and p50/p95 at size.

    python bench/search_quality.py --db URL [--corpus DIR] [--sizes 20000,100000]

Quality: ingests the corpus (mock mode, this process's workers) into the database at URL, then asks every
question of QUESTIONS.json and every fact of MANIFEST.json through `ingest.search.search` in each mode,
and reports how often the answering document is first and among the top 5 hits. Questions are split in
two halves by a hash of their id ("tune" and "held out"): choices were made on the first half only.
For comparison it also ranks with PostgreSQL's own `ts_rank` over an OR of the query's words (the other
design the issue allowed), over the same chunks.

Latency: for each size, a user holding that many generated chunks (drawn from the corpus's chunks,
shuffled sentence by sentence, with random 1536-d unit vectors), then the corpus questions as queries,
timed around `search` (query embedding included) in each mode. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ingest.chunking import Chunk
from ingest.config import Settings
from ingest.logs import configure_logging
from ingest.search_mode import SearchMode
from ingest.services.search import search
from ingest.services.submit import submit_file
from ingest.store import chunks as chunk_store
from ingest.store import vectors
from ingest.store.users import User, ensure_user
from router.embedder_mock import embed_texts
from workers.inprocess import serving
from workers.runtime import Runtime

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus-sample"


def held_out(question_id: str) -> bool:
    return hashlib.sha256(question_id.encode()).digest()[0] % 2 == 1


def ingest_corpus(rt: Runtime, user: User, corpus: Path) -> None:
    files = [
        p
        for p in sorted(corpus.rglob("*"))
        if p.is_file() and "hostile" not in p.parts and p.suffix != ".json"
    ]
    files = [p for p in files if p.name != "README.md" or p.parent != corpus]
    with serving(rt, threads=rt.settings.worker_threads):
        jobs = [submit_file(rt, p, user=user).job_id for p in files]
        while True:
            with rt.pool.connection() as conn:
                (left,) = conn.execute(
                    "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status NOT IN ('completed', 'failed')",
                    (jobs,),
                ).fetchall()[0]
            if not left:
                return
            time.sleep(0.1)


def score(ranked_shas: list[list[str]], wanted: list[set[str]]) -> tuple[float, float]:
    first = sum(bool(r) and r[0] in w for r, w in zip(ranked_shas, wanted, strict=True))
    top5 = sum(bool(set(r[:5]) & w) for r, w in zip(ranked_shas, wanted, strict=True))
    return first / len(wanted), top5 / len(wanted)


def quality(rt: Runtime, user: User, corpus: Path) -> dict[str, Any]:
    manifest = json.loads((corpus / "MANIFEST.json").read_text())
    sha = {e["file"]: e["sha256"] for e in manifest}
    questions = json.loads((corpus / "QUESTIONS.json").read_text())["questions"]
    with rt.pool.connection() as conn:
        doc_sha = {
            d: s for d, s in conn.execute("SELECT id, sha256 FROM documents WHERE owner_id = %s", (user.id,))
        }
    facts = [(fact, e["sha256"]) for e in manifest for fact in e["facts"]]
    out: dict[str, Any] = {"questions": len(questions), "facts": len(facts)}
    for mode in SearchMode:

        def ranked(text: str, mode: SearchMode = mode) -> list[str]:
            return [doc_sha[h.document_id] for h in search(rt, user, text, top_k=5, mode=mode)]

        answers = [ranked(q["question"]) for q in questions]
        wanted = [{sha[q["file"]], *(sha[a] for a in q.get("also", []))} for q in questions]
        for half, keep in (("tune", False), ("held_out", True)):
            idx = [i for i, q in enumerate(questions) if held_out(q["id"]) is keep]
            out[f"{mode.value}_questions_{half}"] = score([answers[i] for i in idx], [wanted[i] for i in idx])
        out[f"{mode.value}_questions"] = score(answers, wanted)
        out[f"{mode.value}_facts_first"] = score([ranked(f) for f, _ in facts], [{s} for _, s in facts])[0]
    out["ts_rank_questions"] = score(
        [ts_rank_ranked(rt, user, q["question"], doc_sha) for q in questions],
        [{sha[q["file"]], *(sha[a] for a in q.get("also", []))} for q in questions],
    )
    return out


def ts_rank_ranked(rt: Runtime, user: User, text: str, doc_sha: dict) -> list[str]:
    """The alternative: PostgreSQL's ts_rank (normalised by length) over an OR of the query's words."""
    with rt.pool.connection() as conn:
        rows = conn.execute(
            "WITH q AS (SELECT replace(plainto_tsquery('english', %s)::text, '&', '|')::tsquery AS q)"
            " SELECT c.document_id FROM chunks c JOIN documents d ON d.id = c.document_id, q"
            " WHERE d.owner_id = %s AND to_tsvector(c.search_config, c.text) @@ q.q"
            " ORDER BY ts_rank(to_tsvector(c.search_config, c.text), q.q, 1) DESC LIMIT 5",
            (text, user.id),
        ).fetchall()
    return [doc_sha[r[0]] for r in rows]


def latency(rt: Runtime, corpus: Path, sizes: list[int], queries: int = 100) -> dict[str, Any]:
    """p50/p95 of `search` per mode for a user holding each number of chunks."""
    questions = [q["question"] for q in json.loads((corpus / "QUESTIONS.json").read_text())["questions"]]
    with rt.pool.connection() as conn:
        sentences = [
            s for (t,) in conn.execute("SELECT text FROM chunks") for s in t.split(". ") if len(s) > 20
        ]
    rng = random.Random(7)
    out: dict[str, Any] = {}
    embedder = rt.router.search_embedder()
    for size in sizes:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, f"bench-{size}")
            space = vectors.ensure_space(conn, embedder.model, embedder.dimensions, simulated=True)
            # Each document's transaction commits on its own: nested in one open transaction they became
            # savepoints, and every `keyword_terms` row then kept a version per document (all the
            # transaction's own, none prunable), which each later update walked: the load slowed as it grew.
            conn.commit()
            with conn.transaction():
                space = vectors.defer_index(conn, space)  # load bare, build once: as a bulk load does
            started = time.perf_counter()
            load_user(conn, user, space, size, sentences, rng)
            loaded = time.perf_counter() - started
            with conn.transaction():
                vectors.build_index(conn, vectors.lock_index(conn, space), memory_mb=512)
        rt.space_rows.clear()
        rt.spaces.clear()
        row: dict[str, Any] = {"load_s": loaded}
        for mode in SearchMode:
            times = []
            for i in range(queries):
                started = time.perf_counter()
                search(rt, user, questions[i % len(questions)], top_k=5, mode=mode)
                times.append((time.perf_counter() - started) * 1000)
            row[mode.value] = {
                "p50_ms": float(np.percentile(times, 50)),
                "p95_ms": float(np.percentile(times, 95)),
            }
        out[str(size)] = row
    return out


def load_user(conn: Any, user: User, space: Any, size: int, sentences: list[str], rng: random.Random) -> None:
    """`size` chunks of shuffled corpus sentences in 40-chunk documents, with vectors, through COPY."""
    per_doc = 40
    for d in range(0, size, per_doc):
        with conn.transaction():
            doc = conn.execute(
                "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, status)"
                " VALUES (%s, %s, %s, 'text/plain', 1, 'completed') RETURNING id",
                (user.id, f"bench-{user.id}-{d}", f"bench-{d}.txt"),
            ).fetchone()[0]
            texts = [". ".join(rng.sample(sentences, 12)) for _ in range(min(per_doc, size - d))]
            chunk_store.replace(conn, doc, [Chunk(i, t, 400, {}) for i, t in enumerate(texts)])
            conn.execute(
                "INSERT INTO jobs (document_id, status, stage, chunks_total) VALUES (%s, 'completed', 'done', %s)",
                (doc, len(texts)),
            )
            ids = [
                r[0]
                for r in conn.execute("SELECT id FROM chunks WHERE document_id = %s ORDER BY ordinal", (doc,))
            ]
            vectors_ = embed_texts(texts, space.dimensions)
            vectors.write(conn, space, ids, vectors_)
            conn.execute("UPDATE chunks SET space_id = %s WHERE document_id = %s", (space.id, doc))
    conn.execute("ANALYZE chunks")
    conn.execute(f"ANALYZE {space.table_name}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--sizes", default="", help="comma-separated chunk counts for the latency runs")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="search-bench-"))
    settings = Settings(_env_file=None, database_url=args.db, home=home)
    configure_logging(settings, interactive=False, quiet=True)
    result: dict[str, Any] = {}
    with Runtime.open(settings) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "quality")
            (have,) = conn.execute(
                "SELECT count(*) FROM documents WHERE owner_id = %s", (user.id,)
            ).fetchall()[0]
        if not have:
            ingest_corpus(rt, user, args.corpus)
        if not args.skip_quality:
            result["quality"] = quality(rt, user, args.corpus)
        if args.sizes:
            result["latency"] = latency(rt, args.corpus, [int(s) for s in args.sizes.split(",")])
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
