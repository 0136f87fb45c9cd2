"""Helpers of the production tests: `ingest` worker processes (and one killed mid-embedding), a private
redis-server, bounded waits, generated documents, and the checks that every document completed exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import psycopg
import pytest
import redis
from psycopg import sql

from ingest.config import Settings
from mocks.faults import FaultPlan
from mocks.openai_api import Ledger
from router.decide import Mode
from workers.runtime import Runtime

INGEST = str(Path(sys.executable).parent / "ingest")
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
T = TypeVar("T")

# A small dictionary: generated documents share no text, so no embedding is served from the reuse cache.
WORDS = (
    "harbor lantern quartz meadow cobalt ember falcon glacier juniper kelp lagoon marble nectar orchid"
    " pepper quiver raven saffron timber umber velvet walnut yarrow zephyr anchor basalt cedar dune"
    " estuary fjord granite heron iris jasper kestrel lichen mistral nimbus opal prairie quarry reef"
    " sierra tundra upland vale willow xenon yucca zinnia amber birch canyon delta"
).split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], T], *, timeout: float, what: str | Callable[[], str], interval: float = 0.2
) -> T:
    """Poll `check` until it returns something true; fail the test with `what` after `timeout` seconds
    (a callable is called then, so a log it quotes is the log at the failure, not at the start)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def write_documents(
    folder: Path, count: int, *, seed: int, words: int = 60, prefix: str = "doc"
) -> list[Path]:
    """`count` small text files of random words (distinct from one another and from other seeds)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        text = " ".join(rng.choice(WORDS) + str(rng.randrange(10**6)) for _ in range(words))
        path = folder / f"{prefix}-{n:05d}.txt"
        path.write_text(f"Document {n} of seed {seed}.\n\n{text}\n")
        paths.append(path)
    return paths


def run_cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INGEST, *args], env=env, capture_output=True, text=True, timeout=timeout)


class WorkerGroup:
    """An `ingest worker` run: Dramatiq's main process, its worker processes and forks, in one session."""

    def __init__(self, env: dict[str, str], log_path: Path, *, processes: int = 1, threads: int = 2) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115  (closed by stop() or kill())
        self.proc = subprocess.Popen(
            [INGEST, "worker", "--processes", str(processes), "--threads", str(threads)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes = processes

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"ingest worker exited ({self.proc.returncode}):\n{self.output()[-3000:]}")
            return self.output().count('"worker_ready"') >= self.processes

        wait_until(
            ready, timeout=timeout, what=lambda: f"ingest worker to start; its log:\n{self.output()[-2000:]}"
        )

    def kill(self) -> None:
        """SIGKILL every process of the run at once (the supervisor and each worker command's process
        group, all in the run's session): no shutdown hook, no acknowledgement, no requeue."""
        for pid in session_members(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        """A graceful stop, as a supervisor does it: SIGTERM to Dramatiq's main process, which passes it on."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._log.close()


def _proc_stats() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, session id) of every process, from /proc (Linux)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) "
        yield int(entry.name), int(fields[1]), int(fields[3])


def session_members(session_id: int) -> list[int]:
    return [pid for pid, _, sid in _proc_stats() if sid == session_id]


def children(pid: int) -> list[int]:
    return sorted(child for child, parent, _ in _proc_stats() if parent == pid)


@contextmanager
def worker_group(env: dict[str, str], log_path: Path, **kwargs: int) -> Iterator[WorkerGroup]:
    group = WorkerGroup(env, log_path, **kwargs)
    try:
        group.wait_ready()
        yield group
    finally:
        group.stop()


def kill_mid_embedding(
    env: dict[str, str],
    standins: object,
    documents: Path,
    log_path: Path,
    *,
    check: Callable[[], object] = lambda: None,
) -> int:
    """Queue `documents` (a file or a folder) with `ingest add --no-wait`, start a worker, and SIGKILL it
    while an embedding request hangs at the OpenAI stand-in (each takes 3 s until the test changes the
    plan); `check` looks at the state at that moment. Return how many embedding requests the stand-in had
    received by the kill."""
    injector = standins.state.openai.state.injector  # type: ignore[attr-defined]
    injector.plan = FaultPlan(latency_ms=3000)  # a wide window to kill the worker inside a request
    count = len(list(documents.iterdir())) if documents.is_dir() else 1
    assert f"{count} queued" in run_cli(env, "add", "--no-wait", str(documents)).stdout
    worker = WorkerGroup(env, log_path)
    try:
        worker.wait_ready()
        wait_until(lambda: injector.stats.served >= 1, timeout=90, what="an embedding request in flight")
        check()
    finally:
        worker.kill()
    return int(injector.stats.served)


class PrivateRedis:
    """A redis-server of this test alone (no persistence), on a free port: restarting it disturbs no one."""

    def __init__(self, folder: Path, *, password: str | None = None) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.folder = folder
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        args += ["--dir", str(self.folder)] + (["--requirepass", self.password] if self.password else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), timeout=20, what="the private redis-server to answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self) -> None:
        """Down and up again, empty: every message it held is gone."""
        self.stop()
        self.start()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


# --- what the database says ----------------------------------------------------------------------------
def job_states(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())


def db_activity(conninfo: str) -> str:
    """What every other session on the test's database is doing: for a failure message (a wait on a lock
    shows as its wait event and the statement that waits)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, state, wait_event_type, wait_event, now() - xact_start, left(query, 160)"
            " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return "\n".join(" | ".join(str(v) for v in row) for row in rows)


def all_jobs_final(conninfo: str, expected: int) -> bool:
    states = job_states(conninfo)
    return states.get("completed", 0) + states.get("failed", 0) == expected


def assert_completed_once(
    conninfo: str, document_ids: Sequence[UUID] | None = None, *, stopped_calls: bool = False
) -> None:
    """Each document completed by one job, with each chunk stored once with one vector, and each billable
    call (real or shadow) in the ledger once, charged, with every embedded token charged exactly once.
    `stopped_calls`: a worker was stopped inside calls, each charged `unknown` besides (costs.budget)."""
    with psycopg.connect(conninfo) as conn:
        docs = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM documents WHERE %(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s)",
                {"ids": list(document_ids) if document_ids is not None else None},
            )
        ]
        assert docs, "no documents to check"
        rows = conn.execute(
            "SELECT d.id, d.status, count(j.id), min(j.status), max(j.status), max(j.chunks_total)"
            " FROM documents d JOIN jobs j ON j.document_id = d.id WHERE d.id = ANY(%s) GROUP BY d.id",
            (docs,),
        ).fetchall()
        for doc_id, status, n_jobs, low, high, total in rows:
            assert (status, n_jobs, low, high) == ("completed", 1, "completed", "completed"), doc_id
            chunks = conn.execute(
                "SELECT count(*), count(DISTINCT ordinal), min(ordinal), max(ordinal), count(space_id),"
                " coalesce(sum(token_count), 0) FROM chunks WHERE document_id = %s",
                (doc_id,),
            ).fetchone()
            count, distinct, first, last, embedded, tokens = chunks
            assert (count, distinct, first, last, embedded) == (total, total, 0, total - 1, total), doc_id
            ledger = conn.execute(
                "SELECT service, state, usage FROM cost_entries WHERE document_id = %s", (doc_id,)
            ).fetchall()
            allowed = {"charged", "unknown"} if stopped_calls else {"charged"}
            assert {state for _, state, _ in ledger} <= allowed, (doc_id, ledger)
            ledger = [row for row in ledger if row[1] == "charged"]
            embedded_tokens = sum(usage["tokens"] for service, _, usage in ledger if service == "openai")
            assert embedded_tokens == tokens, (doc_id, ledger)
            assert sum(service == "llamaparse" for service, _, _ in ledger) == 1, (doc_id, ledger)
        assert len(rows) == len(docs)
    vectors_per_chunk(conninfo, docs)


def assert_ledger_covers_the_bill(conninfo: str, billed: Ledger) -> int:
    """Our OpenAI ledger reads no less than the stand-in's bill, in tokens; return how many calls were
    charged `unknown` (made by a worker stopped inside them)."""
    with psycopg.connect(conninfo) as conn:
        tokens, unknown = conn.execute(
            "SELECT coalesce(sum((usage->>'tokens')::int), 0), count(*) FILTER (WHERE state = 'unknown')"
            " FROM cost_entries WHERE service = 'openai' AND NOT simulated AND state IN ('charged', 'unknown')"
        ).fetchone()
    assert tokens >= billed.prompt_tokens, (tokens, billed.prompt_tokens)
    return int(unknown)


def vectors_per_chunk(conninfo: str, docs: Sequence[UUID]) -> None:
    """Every chunk of the documents has exactly one vector, in the space its row names."""
    with psycopg.connect(conninfo) as conn:
        spaces = conn.execute("SELECT id, table_name FROM embedding_spaces").fetchall()
        for space_id, table in spaces:
            found = conn.execute(
                f"SELECT count(*), count(v.chunk_id) FROM chunks c LEFT JOIN {table} v ON v.chunk_id = c.id"
                " WHERE c.document_id = ANY(%s) AND c.space_id = %s",
                (list(docs), space_id),
            ).fetchone()
            assert found[0] == found[1], f"{found[0] - found[1]} chunks of space {table} have no vector"


def json_lines(text: str) -> list[dict[str, object]]:
    """The JSON objects among a process's output lines (Dramatiq's own start-up lines are not ours)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def set_modes(settings: Settings, **modes: str) -> None:
    """Switch service modes in the database, as `ingest mode set` does, before any worker starts."""
    with Runtime.open(settings) as rt:
        for service, mode in modes.items():
            rt.router.modes.set(Mode(mode), (service,))


# --- a fault only one document meets ---------------------------------------------------------------------
POISON = "ingest_test_poison"


def poison_document(conninfo: str, document_id: str, message: str, *, ordinal: int = 1) -> None:
    """Make every attempt to store the vector of the document's chunk `ordinal` fail with `message` (a
    trigger on chunks; the batch's transaction rolls back). The other chunks are stored, so the failed
    document leaves something behind unless failing cleans it up. Retrying cannot get past it; `heal`
    removes it."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        literal = sql.Literal(message).as_string(conn)
        doc = sql.Literal(document_id).as_string(conn)
        conn.execute(
            f"CREATE FUNCTION {POISON}() RETURNS trigger LANGUAGE plpgsql AS $poison$ BEGIN"
            f" IF NEW.document_id = {doc}::uuid AND NEW.ordinal = {int(ordinal)} AND NEW.space_id IS NOT NULL"
            f" THEN RAISE EXCEPTION USING MESSAGE = {literal}; END IF; RETURN NEW; END $poison$"
        )
        conn.execute(
            f"CREATE TRIGGER {POISON} BEFORE UPDATE OF space_id ON chunks FOR EACH ROW EXECUTE FUNCTION {POISON}()"
        )


def heal(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TRIGGER IF EXISTS {POISON} ON chunks")
        conn.execute(f"DROP FUNCTION IF EXISTS {POISON}()")


def job_of(conninfo: str, document_id: str) -> dict[str, object]:
    """The document's latest job row, and how many chunks and vectors (in any space) the document has."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT id::text, status, error, chunks_total, chunks_done FROM jobs WHERE document_id = %s"
            " ORDER BY created_at DESC LIMIT 1",
            (document_id,),
        ).fetchone()
        spaces = [t for (t,) in conn.execute("SELECT table_name FROM embedding_spaces")]
        vectors = sum(
            conn.execute(
                f"SELECT count(*) FROM {table} v JOIN chunks c ON c.id = v.chunk_id WHERE c.document_id = %s",
                (document_id,),
            ).fetchone()[0]
            for table in spaces
        )
        stored = conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id = %s", (document_id,)
        ).fetchone()[0]
    job_id, status, error, total, done = row
    return {
        "id": job_id,
        "status": status,
        "error": error,
        "chunks_total": total,
        "chunks_done": done,
        "chunks": stored,
        "vectors": vectors,
    }


def max_deliveries(conninfo: str) -> int:
    """The most deliveries any one message had (workers.middleware.lifecycle counts them)."""
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT coalesce(max(deliveries), 0) FROM message_deliveries").fetchone()[0]


def documents_by_id(conninfo: str) -> dict[str, str]:
    """filename → document id."""
    with psycopg.connect(conninfo) as conn:
        return {name: str(doc) for doc, name in conn.execute("SELECT id, filename FROM documents")}
