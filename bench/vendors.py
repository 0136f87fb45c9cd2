"""Real vendor clients against the stand-ins vs pure mock mode, on one corpus, in one run.

Both runs ingest the same files on one embedded PostgreSQL, as two users (each has their own copy), with
the in-process workers. The real run sends through the official SDKs, over loopback HTTP, to the vendor
stand-ins of `ingest mocks serve`, served in a process of their own so that the "vendor's" CPU does not
share our interpreter. It reports:

- OpenAI: embedding requests sent (the stand-in's count, refused ones included) against the fewest the
  API's limits allow for the corpus (`plan_batches` over the token counts of its distinct chunk texts:
  2,048 inputs and 300,000 tokens per request), and against the pipeline's own plan (per document,
  batches of `embed_batch_chunks`);
- LlamaParse: requests and jobs against the fewest a parse needs (upload, create, one status look, the
  result: four requests and one job per document);
- wall time, from the first submission to the last job's end, of the real run against the mock run.

Each mode first ingests a small file of its own, untimed and left out of the counts: a process pays its
imports (the vendor SDKs are imported when the real clients are first built) once, not per corpus. Its
text is not the corpus's, so no embedding of it can serve the timed runs.

Usage: python bench/vendors.py [--corpus samples] [--fault-rate 0.3] [--poll-s 0.05]
The stand-in's parse jobs take MOCKS_LLAMAPARSE_JOB_DELAY_S (default 0.05 s) before parsing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from uuid import UUID

import uvicorn
from pydantic import SecretStr

from ingest.cli.add import expand
from ingest.config import Settings
from ingest.logs import configure_logging
from ingest.services.submit import submit_file
from ingest.store.users import ensure_user
from mocks import server
from mocks.faults import FaultPlan
from router.decide import Mode
from router.openai_real import MAX_INPUTS_PER_REQUEST, MAX_TOKENS_PER_REQUEST, plan_batches
from workers.inprocess import serving
from workers.parse_stage import batches
from workers.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
# The requests a parse cannot do without: upload, create, one look at the status, the result.
LLAMAPARSE_FEWEST_PER_DOCUMENT = 4


@dataclass(frozen=True, slots=True)
class StandinRecords:
    """What the stand-ins saw: every request (served or refused by a fault) and what they billed."""

    openai_sent: int
    openai_served: int
    openai_tokens: int
    llamaparse_sent: int
    llamaparse_jobs: int

    def __sub__(self, earlier: StandinRecords) -> StandinRecords:
        return StandinRecords(
            *(getattr(self, name) - getattr(earlier, name) for name in StandinRecords.__dataclass_fields__)
        )


# --- the stand-ins' process ---------------------------------------------------------------------------


def serve_standins(port: int, plan: FaultPlan, reports: Connection) -> None:
    """Serve both stand-ins on `port`, answering each request for their records, until told to stop."""
    app = server.create_app(plan)
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    openai, llamaparse = app.state.openai.state, app.state.llamaparse.state.llamaparse
    while reports.recv() == "report":
        openai_faults, llamaparse_faults = openai.injector.stats, llamaparse.injector.stats
        reports.send(
            StandinRecords(
                openai_sent=openai_faults.served + openai_faults.failed,
                openai_served=openai.ledger.requests,
                openai_tokens=openai.ledger.prompt_tokens,
                llamaparse_sent=llamaparse_faults.served + llamaparse_faults.failed,
                llamaparse_jobs=len(llamaparse.jobs),
            )
        )
    srv.should_exit = True
    thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("the stand-ins did not start") from None
            time.sleep(0.05)


# --- the runs ------------------------------------------------------------------------------------------


def ingest(rt: Runtime, files: list[Path], user_name: str, mode: Mode) -> tuple[float, list[UUID]]:
    """Ingest every file as `user_name` with both services in `mode`: seconds taken, documents."""
    rt.router.modes.set(mode)
    with rt.pool.connection() as conn:
        user = ensure_user(conn, user_name)
    with serving(rt, threads=rt.settings.worker_threads):
        started = time.perf_counter()
        submitted = [submit_file(rt, path, user=user) for path in files]
        jobs = [s.job_id for s in submitted]
        while True:
            with rt.pool.connection() as conn:
                states = [
                    row[0] for row in conn.execute("SELECT status FROM jobs WHERE id = ANY(%s)", (jobs,))
                ]
            if all(state in ("completed", "failed") for state in states):
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    if set(states) != {"completed"}:
        raise SystemExit(f"{mode.value} mode: {states.count('failed')} of {len(jobs)} jobs failed")
    return elapsed, [s.document_id for s in submitted]


def token_counts(rt: Runtime, documents: list[UUID]) -> tuple[list[int], list[int]]:
    """Token counts of the documents' distinct chunk texts, and chunks per document."""
    with rt.pool.connection() as conn:
        distinct = conn.execute(
            "SELECT DISTINCT ON (text_hash) token_count FROM chunks WHERE document_id = ANY(%s)"
            " ORDER BY text_hash",
            (documents,),
        ).fetchall()
        per_document = conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id = ANY(%s) GROUP BY document_id", (documents,)
        ).fetchall()
    return [row[0] for row in distinct], [row[0] for row in per_document]


def fault_plan(rate: float) -> FaultPlan:
    # 429s and 500s in equal shares, timeouts the rest; a hang well past the client's timeout.
    return FaultPlan(
        rate_429=rate * 0.4,
        rate_500=rate * 0.4,
        rate_timeout=rate * 0.2,
        retry_after_s=0.05,
        timeout_s=4,
        seed=7,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "samples", help="a folder of documents")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of vendor requests that fail")
    parser.add_argument("--poll-s", type=float, default=0.05, help="first wait between looks at a parse job")
    args = parser.parse_args()
    files = list(expand([args.corpus]))

    port = free_port()
    reports, standins_end = multiprocessing.Pipe()
    # spawn: the stand-ins start from a clean interpreter, not a fork of this one's threads and sockets.
    standins = multiprocessing.get_context("spawn").Process(
        target=serve_standins, args=(port, fault_plan(args.fault_rate), standins_end), daemon=True
    )
    standins.start()
    wait_until_listening(port)
    base = f"http://127.0.0.1:{port}"

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        settings = Settings(
            _env_file=None,
            home=Path(tmp) / "home",
            openai_api_key=SecretStr("sk-bench"),
            openai_base_url=f"{base}/v1",
            llama_cloud_api_key=SecretStr("llx-bench"),
            llama_cloud_base_url=base,
            llamaparse_poll_interval_s=args.poll_s,
            llamaparse_max_poll_interval_s=max(args.poll_s, 1.0),
            vendor_max_attempts=12,
            vendor_initial_backoff_s=0.01,
            vendor_max_backoff_s=0.2,
            vendor_timeout_s=2.0,
        )
        configure_logging(settings, interactive=True, quiet=True)
        with Runtime.open(settings) as rt:
            warm_up_file = Path(tmp) / "warm-up.md"
            warm_up_file.write_text(
                "# Warm-up\n\nThis note only brings the process up to speed before the runs.\n"
            )
            ingest(rt, [warm_up_file], "warm-up-mock", Mode.MOCK)
            ingest(rt, [warm_up_file], "warm-up-real", Mode.REAL)
            reports.send("report")
            warm_up: StandinRecords = reports.recv()
            mock_s, _ = ingest(rt, files, "bench-mock", Mode.MOCK)
            real_s, documents = ingest(rt, files, "bench-real", Mode.REAL)
            distinct, per_document = token_counts(rt, documents)
        reports.send("report")
        seen = reports.recv() - warm_up
    reports.send("stop")
    standins.join(timeout=15)

    fewest = len(plan_batches(distinct))
    planned = sum(len(batches(list(range(n)), settings.embed_batch_chunks)) for n in per_document)
    parses = LLAMAPARSE_FEWEST_PER_DOCUMENT * len(files)
    print(
        f"corpus: {args.corpus} ({len(files)} documents, {sum(per_document)} chunks, {len(distinct)} distinct"
        f" texts of {sum(distinct):,} tokens); faults {args.fault_rate:.0%}; polls from {args.poll_s:g} s"
    )
    limits = f"{MAX_INPUTS_PER_REQUEST:,} inputs, {MAX_TOKENS_PER_REQUEST:,} tokens per request"
    print("OpenAI embeddings")
    row("requests sent", seen.openai_sent, f"{seen.openai_served} served, {seen.openai_tokens:,} tokens")
    row("fewest the limits allow", fewest, limits)
    row("sent / fewest", f"{seen.openai_sent / fewest:.2f}x")
    row("the pipeline's plan", planned, f"batches of {settings.embed_batch_chunks} chunks, per document")
    print("LlamaParse")
    row(
        "requests sent",
        seen.llamaparse_sent,
        f"fewest: {parses}, {LLAMAPARSE_FEWEST_PER_DOCUMENT} a document",
    )
    row("sent / fewest", f"{seen.llamaparse_sent / parses:.2f}x")
    row("jobs", seen.llamaparse_jobs, f"fewest: {len(files)}")
    print("Wall time (first submission to last job's end)")
    row("mock mode", f"{mock_s:.2f} s")
    row("real clients, stand-ins", f"{real_s:.2f} s")
    row("real / mock", f"{real_s / mock_s:.2f}x")


def row(label: str, value: object, note: str = "") -> None:
    print(f"  {label:<24} : {value!s:>8}" + (f"  ({note})" if note else ""))


if __name__ == "__main__":
    main()
