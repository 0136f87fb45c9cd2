"""This pipeline against LlamaIndex and LangChain on one embedded pgvector, with one fake embedder.

    make bench-peers        # or: bench/run.sh [--docs 200] [--search-vectors 100000]

Everything runs on this machine in one go and the figures land in docs/benchmarks.md:
- ingest rate, chunks/s, HNSW live (index first) and bulk (load, then index; index build included),
  for: this pipeline (live: INGEST_BULK_MIN_CHUNKS=0; bulk: the defaults, which defer the index for a
  large backlog on their own), a lean framework-free floor (tiktoken windows + binary COPY), LlamaIndex
  IngestionPipeline + PGVectorStore, LangChain + langchain-postgres PGVector (peers in bench/.venv-peers);
- the store stage (`vectors.write`) against a raw binary COPY of the same rows;
- peak RSS of this pipeline at 1x and 10x the corpus (a fresh process each);
- re-ingest after editing 1% of the paragraphs (`--replace`): embedding tokens sent against the first ingest;
- recall@10 of this pipeline's search over the corpus it ingested (the sample corpus's vectors);
- search p50/p95, recall@10 against exact search, and the API's overhead over a bare pgvector query
  (both timed from pool checkout to commit, at the same ef_search), with an ef_search sweep.
Each measurement gets its own database, so no run warms another's index.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

# Imported after the path above: they are this folder's scripts, not installed modules.
import bench_ours  # noqa: E402
import pipeline as corpus_gen  # noqa: E402
import report  # noqa: E402
import shapes  # noqa: E402

PEERS_PY = BENCH / ".venv-peers" / "bin" / "python"


def fresh_db(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = make_conninfo(server, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return url


def run_json(argv: list[str], env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ours(server: str, name: str, corpus: Path, home: Path, dims: int, **flags: object) -> dict:
    argv = [
        sys.executable,
        str(BENCH / "bench_ours.py"),
        "--db",
        fresh_db(server, name),
        "--corpus",
        str(corpus),
    ]
    argv += ["--home", str(home / name), "--dims", str(dims)]
    for flag, value in flags.items():
        argv += [f"--{flag.replace('_', '-')}", str(value)]
    return run_json(argv, env={**os.environ, "PYTHONPATH": str(BENCH.parent / "src")})


def peer(server: str, framework: str, mode: str, corpus: Path, dims: int) -> dict:
    db = fresh_db(server, f"{framework}_{mode}")
    argv = [str(PEERS_PY), str(BENCH / "peers_run.py"), framework, "--db", db, "--corpus", str(corpus)]
    return run_json([*argv, "--dims", str(dims), "--mode", mode])


def versions() -> dict[str, str]:
    out = subprocess.run(
        [
            str(PEERS_PY),
            "-c",
            (
                "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in"
                " ['llama-index-core', 'llama-index-vector-stores-postgres', 'langchain-core', 'langchain-postgres']}))"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB RAM, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--paragraphs", type=int, default=40)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--search-vectors", type=int, default=100_000)
    parser.add_argument("--skip-10x", action="store_true", help="Skip the 10x memory run (long on 2 cores).")
    parser.add_argument("--out", type=Path, default=BENCH.parent / "docs" / "benchmarks.md")
    parser.add_argument(
        "--shapes-only",
        action="store_true",
        help="Only the corpus-shapes table (bench/shapes.py), spliced in.",
    )
    parser.add_argument(
        "--shapes-scale", type=float, default=1.0, help="Shrink the shapes' corpora (a quick look)."
    )
    args = parser.parse_args()

    from ingest.db import embedded

    if args.shapes_only:
        with tempfile.TemporaryDirectory(prefix="ingest-bench-shapes-") as tmp:
            root = Path(tmp)
            server = embedded.start(root / "pgdata")
            found = shapes.run(server, root, args.dims, fresh_db, ours, peer, scale=args.shapes_scale)
        (BENCH / "results").mkdir(exist_ok=True)
        (BENCH / "results" / "shapes.json").write_text(json.dumps(found, indent=2, default=str))
        args.out.write_text(shapes.splice(args.out.read_text(), shapes.render(found)))
        print(f"wrote {args.out}")
        return

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-peers-") as tmp:
        root = Path(tmp)
        server = embedded.start(root / "pgdata")
        corpus = root / "corpus"
        corpus.mkdir()
        corpus_gen.generate_corpus(corpus, args.docs, args.paragraphs)
        d = args.dims
        results["ours_live"] = ours(server, "ours_live", corpus, root, d, live=1)
        # Binary-quantized HNSW (INGEST_VECTOR_INDEX=binary) with exact re-ranking, live and bulk.
        results["ours_bq_live"] = ours(
            server, "ours_bq_live", corpus, root, d, live=1, index="binary", recall=1
        )
        results["ours_bq_bulk"] = ours(server, "ours_bq_bulk", corpus, root, d, index="binary", recall=1)
        # The product as configured by default (bulk loads on), then its search over what it stored, then
        # the 1% edit; the edit rewrites the corpus files, so every other pipeline runs before it.
        results["floor_live"] = bench_ours.floor(fresh_db(server, "floor_live"), corpus, d, bulk=False)
        results["floor_bulk"] = bench_ours.floor(fresh_db(server, "floor_bulk"), corpus, d, bulk=True)
        for framework in ("llamaindex", "langchain"):
            for mode in ("live", "bulk"):
                results[f"{framework}_{mode}"] = peer(server, framework, mode, corpus, d)
        results["store"] = bench_ours.store_vs_raw(fresh_db(server, "store"), corpus, d)
        results["ours_bulk"] = ours(server, "ours_bulk", corpus, root, d, recall=1, reingest=1)
        if not args.skip_10x:
            big = root / "corpus10"
            big.mkdir()
            corpus_gen.generate_corpus(big, args.docs * 10, args.paragraphs, seed=11)
            results["ours_10x"] = ours(server, "ours_10x", big, root, d)
        results["shapes"] = shapes.run(server, root, d, fresh_db, ours, peer)
        results["search"] = bench_ours.search_bench(
            fresh_db(server, "search"), root / "search-home", args.search_vectors
        )
    results["machine"] = machine()
    results["versions"] = {**versions(), **bench_ours.own_versions()}
    results["command"] = " ".join(["bench/run.sh", *sys.argv[1:]])
    results["corpus"] = {"docs": args.docs, "paragraphs": args.paragraphs, "dims": d}
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "peers.json").write_text(json.dumps(results, indent=2, default=str))
    args.out.write_text(report.render(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    random.seed(0)
    main()
