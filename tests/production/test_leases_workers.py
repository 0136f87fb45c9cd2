"""Job leases through real processes, with the OpenAI stand-in in real mode (its own ledger is the
vendor's bill):

- over Redis and over RabbitMQ, one `ingest worker` killed (SIGKILL) and another frozen (SIGSTOP) in the
  middle of an embedding call, a third started: every job completes; once the frozen one is let go
  (SIGCONT) it writes nothing (`ingest verify` clean, one vector per chunk) and every call the stand-in
  billed is charged once, the frozen worker's too;
- over Redis and over RabbitMQ, a stage that outlives several lease periods, with another worker
  waiting beside it, runs once;
- `ingest add` (jobs in-process) interrupted mid-run, then run again: the second run finishes the first
  one's jobs at once.

Leases last seconds here: the heartbeat keeps a live worker's, the sweep re-sends a dead or frozen one's
at its next pass. Waits are generous bounds; the assertions are outcomes, never timings."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from production_support import (
    INGEST,
    WorkerGroup,
    run_cli,
    session_members,
    set_modes,
    vectors_per_chunk,
    wait_until,
    worker_group,
    write_documents,
)

from ingest.config import Settings
from ingest.leases import owner_process
from mocks.faults import FaultPlan
from mocks.openai_api import Ledger

# Bounded waits add up to more than the suite's default per-test timeout on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SHARED_REDIS = "redis://127.0.0.1:6379/0"
RABBITMQ = ("127.0.0.1", 5672)
# Leases of seconds; the stage time limit far above any wait here, so only leases decide.
LEASES = {
    # Each document alone: these are the per-document path's units (its parse, each embedding batch);
    # a batch of small documents is killed mid-call in test_batch_sigkill.py.
    "INGEST_DOCUMENT_BATCH_TOKENS": "0",
    "INGEST_LEASE_S": "3",
    "INGEST_LEASE_HEARTBEAT_S": "0.5",
    "INGEST_SWEEP_INTERVAL_S": "1",
    "INGEST_JOB_TIME_LIMIT_S": "300",
    "INGEST_REQUEUE_IDLE_S": "600",
    "INGEST_BROKER_HEARTBEAT_TIMEOUT_S": "3",
    "INGEST_BROKER_MAINTENANCE_CHANCE": "200000",
    "INGEST_LOG_FORMAT": "json",
}
EnvMaker = Callable[..., dict[str, str]]


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def _redis_broker() -> Iterator[dict[str, str]]:
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    namespace = f"ingest-leases-{uuid.uuid4().hex[:8]}"
    yield {"REDIS_URL": SHARED_REDIS, "INGEST_BROKER_NAMESPACE": namespace}
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)


def _rabbitmq_broker() -> Iterator[dict[str, str]]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    try:
        socket.create_connection(RABBITMQ, timeout=2).close()
    except OSError:
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672 (.ci/run starts it)")
    vhost = f"ingest-leases-{uuid.uuid4().hex[:8]}"  # queue names are fixed: a vhost of this test's own
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield {"RABBITMQ_URL": f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/{vhost}"}
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
    ]
)
def broker_env(request: pytest.FixtureRequest, ingest_env: dict[str, str]) -> Iterator[EnvMaker]:
    """Makes the environment of this test's `ingest` processes: its database, its own Redis namespace or
    RabbitMQ vhost, short leases, and `extra` INGEST_* settings. It copies os.environ when called, so the
    stand-ins' variables are in it."""
    brokers = _redis_broker() if request.param == "redis" else _rabbitmq_broker()
    broker = next(brokers)

    def make(**extra: str) -> dict[str, str]:
        settings = {f"INGEST_{name}": value for name, value in extra.items()}
        return {**os.environ, **ingest_env, **LEASES, **broker, **settings}

    yield make
    for _ in brokers:  # the broker's clean-up
        pass


# --- what the database says ----------------------------------------------------------------------------
def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


def _in_group(owner: str, group: WorkerGroup) -> bool:
    """Whether the lease owner is a process of `ingest worker` `group`: its supervisor leads a session of
    its own, and its Dramatiq commands (each in a process group of its own) stay in that session."""
    process = owner_process(owner)
    return process is not None and _session(process[1]) == group.proc.pid


def holds_a_lease(conninfo: str, group: WorkerGroup) -> bool:
    with psycopg.connect(conninfo) as conn:
        owners = [o for (o,) in conn.execute("SELECT owner FROM job_leases WHERE owner IS NOT NULL")]
    return any(_in_group(owner, group) for owner in owners)


def call_in_flight(conninfo: str, group: WorkerGroup) -> tuple[int, str] | None:
    """(ledger id, key) of an embedding call a worker of `group` has reserved and not settled, under the
    lease it holds: its request is at the stand-in now."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT c.id, c.key, l.owner FROM cost_entries c JOIN job_leases l ON l.job_id = c.job_id"
            " AND c.holder = l.unit || '#' || l.generation AND c.key = c.document_id::text || ':' || l.unit"
            " WHERE c.state = 'reserved' AND NOT c.simulated AND c.service = 'openai' AND l.owner IS NOT NULL"
        ).fetchall()
    return next(((entry, key) for entry, key, owner in rows if _in_group(owner, group)), None)


def entry_state(conninfo: str, entry_id: int) -> str:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT state FROM cost_entries WHERE id = %s", (entry_id,)).fetchone()[0]


def statuses(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())


def openai_ledger(conninfo: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """Our real OpenAI charges and `unknown` charges (key, tokens), and how many reservations were never
    settled."""
    with psycopg.connect(conninfo) as conn:

        def rows(state: str) -> list[tuple[str, int]]:
            return conn.execute(
                "SELECT key, (usage->>'tokens')::int FROM cost_entries"
                " WHERE service = 'openai' AND NOT simulated AND state = %s ORDER BY key",
                (state,),
            ).fetchall()

        unsettled = len(rows("reserved"))
        return rows("charged"), rows("unknown"), unsettled


def document_ids(conninfo: str) -> list[uuid.UUID]:
    with psycopg.connect(conninfo) as conn:
        return [doc for (doc,) in conn.execute("SELECT id FROM documents")]


def _signal_group(group: WorkerGroup, sig: signal.Signals) -> None:
    """Signal every process of the `ingest worker` run (its session: supervisor, commands, forks)."""
    for pid in session_members(group.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# --- the tests -----------------------------------------------------------------------------------------
def test_a_killed_and_a_frozen_worker_lose_nothing_and_the_frozen_one_writes_nothing(
    standins: object,
    broker_env: EnvMaker,
    settings: Settings,
    tmp_path: Path,
    openai_records: Callable[[object], Ledger],
) -> None:
    set_modes(settings, openai="real")
    # Every embedding request takes 1.5 s at the stand-in: a wide window to freeze a worker inside one.
    standins.state.openai.state.injector.plan = FaultPlan(latency_ms=1500)  # type: ignore[attr-defined]
    env = broker_env(EMBED_BATCH_CHUNKS="1")
    conninfo = settings.database_url or ""
    count = 6
    write_documents(tmp_path / "docs", count, seed=23, words=320)
    assert "queued" in run_cli(env, "add", "--no-wait", str(tmp_path / "docs")).stdout

    killed = WorkerGroup(env, tmp_path / "killed.log")
    # One thread: frozen inside its call, it holds no row lock another worker would wait for.
    frozen = WorkerGroup(env, tmp_path / "frozen.log", threads=1)
    third: WorkerGroup | None = None
    try:
        killed.wait_ready()
        frozen.wait_ready()
        entry_id, key = wait_until(
            lambda: holds_a_lease(conninfo, killed) and call_in_flight(conninfo, frozen),
            timeout=120,
            what="one worker holding a lease and the other inside an embedding call",
        )
        killed.kill()
        _signal_group(frozen, signal.SIGSTOP)
        third = WorkerGroup(env, tmp_path / "third.log")
        third.wait_ready()
        wait_until(
            lambda: statuses(conninfo).get("completed", 0) == count,
            timeout=300,
            what=lambda: (
                f"every job to complete after the faults: {statuses(conninfo)}; third worker:\n"
                f"{third.output()[-3000:]}"
            ),
        )
        _signal_group(frozen, signal.SIGCONT)
        # It wakes with its billed answer: it charges the call, then finds its lease gone and stops.
        wait_until(
            lambda: entry_state(conninfo, entry_id) == "charged" and '"lease_lost"' in frozen.output(),
            timeout=120,
            what=lambda: f"the frozen worker to wake and stop; its log:\n{frozen.output()[-3000:]}",
        )
    finally:
        _signal_group(frozen, signal.SIGCONT)
        frozen.stop()
        if third is not None:
            third.stop()

    assert statuses(conninfo) == {"completed": count}
    verified = run_cli(env, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    vectors_per_chunk(conninfo, document_ids(conninfo))
    assert '"leases_lapsed"' in third.output() + frozen.output()  # the sweep re-sent, not a timer
    billed = openai_records(standins)
    charged, unknown, unsettled = openai_ledger(conninfo)
    # The frozen worker's call and the one that redid its batch were both billed: both are charged (the
    # frozen one's reservation was charged `unknown` when the third took the batch over, then settled to
    # its bill when it woke).
    keys = [k for k, _ in charged]
    assert key in keys and any(k.startswith(f"{key}:unknown:") for k in keys), keys
    # Every settled charge is a call the stand-in billed (none twice). A call the killed worker had in
    # flight is charged `unknown` at its estimate once another worker took its batch over, so the ledger
    # never reads less than the bill; nothing is left reserved.
    assert unsettled == 0
    assert len(charged) <= billed.requests <= len(charged) + len(unknown)
    assert sum(tokens for _, tokens in charged) <= billed.prompt_tokens
    assert billed.prompt_tokens <= sum(tokens for _, tokens in charged + unknown)


def test_a_stage_longer_than_several_leases_runs_once(
    standins: object,
    broker_env: EnvMaker,
    settings: Settings,
    tmp_path: Path,
    openai_records: Callable[[object], Ledger],
) -> None:
    set_modes(settings, openai="real")
    # Each embedding call takes 25 s: four lease periods, kept alive by a heartbeat every 0.5 s. (A lease
    # of a second or two lapses now and then on a loaded machine: correct, but then the unit is redone.)
    standins.state.openai.state.injector.plan = FaultPlan(latency_ms=25_000)  # type: ignore[attr-defined]
    env = broker_env(EMBED_BATCH_CHUNKS="1", LEASE_S="6", LEASE_HEARTBEAT_S="0.5")
    conninfo = settings.database_url or ""
    write_documents(tmp_path / "docs", 1, seed=31, words=320)
    assert "queued" in run_cli(env, "add", "--no-wait", str(tmp_path / "docs")).stdout

    with worker_group(env, tmp_path / "a.log") as a, worker_group(env, tmp_path / "b.log") as b:
        wait_until(
            lambda: statuses(conninfo) == {"completed": 1},
            timeout=180,
            what=lambda: f"the document to complete: {statuses(conninfo)}",
        )
        logs = a.output() + b.output()

    with psycopg.connect(conninfo) as conn:
        attempts, total = conn.execute("SELECT attempts, chunks_total FROM jobs").fetchone()
    billed = openai_records(standins)
    charged, unknown, unsettled = openai_ledger(conninfo)
    assert '"leases_lapsed"' not in logs and '"lease_lost"' not in logs
    assert total >= 2 and attempts == 1
    assert billed.requests == total == len(charged) and unsettled == 0 and unknown == []  # each once
    assert not any("#" in k for k, _ in charged)  # no batch was taken over


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["interrupted", "killed"])
def test_an_interrupted_add_resumes_at_once_when_run_again(
    standins: object, ingest_env: dict[str, str], settings: Settings, tmp_path: Path, sig: signal.Signals
) -> None:
    set_modes(settings, openai="real")
    # Slow enough that work is left when the signal lands: small documents travel in batches, and a run
    # at 300 ms a request once finished all 24 before the signal arrived.
    standins.state.openai.state.injector.plan = FaultPlan(latency_ms=1000)  # type: ignore[attr-defined]
    # Jobs run inside `ingest add`; a few at a time per user, so the interrupted run's jobs fill the cap
    # (each small document a slot of its own: eight to a slot would admit all 24 at once).
    env = {
        **os.environ,
        **ingest_env,
        "INGEST_USER_ACTIVE_JOBS": "4",
        "INGEST_BATCH_DOCUMENTS_PER_SLOT": "1",
        "INGEST_WORKER_THREADS": "2",
        "INGEST_LOG_FORMAT": "json",
    }
    conninfo = settings.database_url or ""
    count = 24
    write_documents(tmp_path / "docs", count, seed=41, words=160)
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen([INGEST, "add", str(tmp_path / "docs")], env=env, stdout=log, stderr=log)
        try:
            wait_until(
                lambda: statuses(conninfo).get("completed", 0) >= 2,
                timeout=120,
                what="the first run to complete a few documents",
            )
            first.send_signal(sig)
            first.wait(timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
    left = count - statuses(conninfo).get("completed", 0)
    assert left > 0  # the interruption left work behind

    again = run_cli(env, "add", str(tmp_path / "docs"), timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert statuses(conninfo) == {"completed": count}
    verified = run_cli(env, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
