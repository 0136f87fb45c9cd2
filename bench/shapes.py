"""Two corpus shapes, four pipelines, both index modes, in one run (issue 14's table).

    bench/run.sh --shapes-only      # this table alone, spliced into docs/benchmarks.md
    bench/run.sh                    # the whole benchmark, this table included

Corpora: 200 documents of about 4,000 words and 2,000 of about 300 words (bench/pipeline.py's generator).
Pipelines: this one (`ingest add`'s path in one process: bulk admission, batches of small documents), the
lean floor, LlamaIndex and LangChain (bench/.venv-peers), each with the same seeded fake embedder. Modes:
HNSW live (index first) and bulk (load, then index; the build is timed). Reported: documents/s, chunks/s,
embedding requests (calls to the embedder: one API request each), statements and commits per document
(this pipeline: statements counted in the client, commits from pg_stat_database), peak RSS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bench_ours
import pipeline as corpus_gen

# (label, documents, paragraphs of 60-140 words)
SHAPES = (("200 × 4,000 words", 200, 40), ("2,000 × 300 words", 2000, 3))
MODES = ("live", "bulk")
BEGIN = "<!-- shapes: begin (bench/shapes.py) -->"
END = "<!-- shapes: end -->"


def run(server: str, root: Path, dims: int, fresh_db: Any, ours: Any, peer: Any, scale: float = 1.0) -> dict:
    """Every pipeline on every shape and mode; `scale` shrinks the corpora for a quick look."""
    results: dict[str, Any] = {}
    for label, docs, paragraphs in SHAPES:
        n = max(2, int(docs * scale))
        corpus = root / f"shape-{n}-{paragraphs}"
        corpus.mkdir()
        corpus_gen.generate_corpus(corpus, n, paragraphs, seed=13)
        rows: dict[str, dict] = {}
        for mode in MODES:
            name = f"s{n}_{paragraphs}_{mode}"
            live = {"live": 1} if mode == "live" else {}
            rows[f"ours_{mode}"] = ours(server, f"ours_{name}", corpus, root, dims, **live)
            rows[f"floor_{mode}"] = bench_ours.floor(
                fresh_db(server, f"floor_{name}"), corpus, dims, bulk=mode == "bulk"
            )
            for framework in ("llamaindex", "langchain"):
                rows[f"{framework}_{mode}"] = peer(server, framework, mode, corpus, dims)
        results[label] = {"docs": n, "rows": rows}
    return results


def render(results: dict) -> str:
    lines = [
        BEGIN,
        "## Corpus shapes: many small documents and fewer large ones (issue 14)",
        "",
        "One run, every figure beside the others it is compared with. Documents/s (chunks/s in brackets);",
        "requests: embedding calls (each one API request); statements and commits: per document, this",
        "pipeline only (the commits include the bench's own progress polls, 20 a second).",
        "",
        "| corpus | index | lean floor | LangChain + PGVector | LlamaIndex + PGVectorStore | this pipeline |"
        " requests (floor / LC / LI / ours) | statements, commits per doc | peak MB (ours) |",
        "|---|---|---:|---:|---:|---:|---|---|---:|",
    ]
    targets = []
    for label, shape in results.items():
        docs, rows = shape["docs"], shape["rows"]
        for mode in MODES:
            r = {k.removesuffix(f"_{mode}"): v for k, v in rows.items() if k.endswith(f"_{mode}")}

            def rate(name: str, r: dict = r, docs: int = docs) -> str:
                x = r[name]
                return f"{docs / x['seconds']:.1f} ({x['chunks'] / x['seconds']:.0f})"

            o = r["ours"]
            requests = " / ".join(
                str(r[p].get("embed_requests", "?")) for p in ("floor", "langchain", "llamaindex", "ours")
            )
            per_doc = f"{o['statements'] / docs:.1f}, {o['commits'] / docs:.2f}"
            lines.append(
                f"| {label} | {mode} | {rate('floor')} | {rate('langchain')} | {rate('llamaindex')} | {rate('ours')}"
                f" | {requests} | {per_doc} | {o['peak_mb']:.0f} |"
            )
            ours_rate = docs / o["seconds"]
            best_peer = max(docs / r[p]["seconds"] for p in ("langchain", "llamaindex"))
            floor_rate = docs / r["floor"]["seconds"]
            need = 0.9 if mode == "live" else 0.5
            targets.append(
                (
                    f"{label}, {mode}: at least 2x the faster peer",
                    f"{ours_rate / best_peer:.2f}x",
                    ours_rate >= 2 * best_peer,
                )
            )
            targets.append(
                (
                    f"{label}, {mode}: at least {need}x the floor",
                    f"{ours_rate / floor_rate:.2f}x",
                    ours_rate >= need * floor_rate,
                )
            )
    lines += ["", "| target | measured | |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {'met' if ok else '**not met**'} |" for name, value, ok in targets]
    lines += ["", END]
    return "\n".join(lines)


def splice(document: str, section: str) -> str:
    """`document` with its shapes section replaced by `section` (appended when it has none)."""
    if BEGIN in document and END in document:
        head, _, rest = document.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + section + tail
    return document.rstrip("\n") + "\n\n" + section + "\n"
