"""The LlamaParse webhook wake-up across connections and processes, over PostgreSQL LISTEN/NOTIFY and over
Redis lists; and the router's parser waiting on it when a public URL is set. Waits that must end early
wait long (bounded); nothing asserts on time."""

from __future__ import annotations

import asyncio
import select
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi import FastAPI, Request, Response
from psycopg_pool import ConnectionPool
from pydantic import SecretStr
from starlette.types import ASGIApp

from ingest.config import Settings
from ingest.db.pool import open_pool
from mocks import llamaparse_api
from router.llamaparse.client import WEBHOOK_PATH
from router.llamaparse.signal import JobSignal, PostgresJobSignal, RedisJobSignal, job_signal
from router.llamaparse.webhook import SIGNATURE_HEADER, WebhookVerificationError, verify
from workers.runtime import Runtime

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
REDIS_URL = "redis://127.0.0.1:6379/0"
SECRET = "whsec-signal-test"
LONG_S = 30.0  # a wait that must end on an event; reached only if the signal is broken

# The other process: `wait JOB` prints "listening" once it can hear events, then whether JOB's came;
# `notify JOB` sends it.
OTHER_PROCESS = """
import sys
transport, url, namespace, action, job_id = sys.argv[1:]
if transport == "postgres":
    from ingest.db.pool import open_pool
    from router.llamaparse.signal import PostgresJobSignal
    signal = PostgresJobSignal(open_pool(url, max_size=1))
else:
    import redis
    from router.llamaparse.signal import RedisJobSignal
    signal = RedisJobSignal(redis.Redis.from_url(url), namespace=namespace)
if action == "notify":
    signal.notify(job_id)
else:
    if transport == "postgres":
        signal.wait("warm-up", 30)  # the first wait returns once LISTEN is in place
    print("listening", flush=True)
    print(signal.wait(job_id, 30), flush=True)
signal.close()
"""


def other_process(
    transport: str, url: str, namespace: str, action: str, job_id: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS, transport, url, namespace, action, job_id],
        stdout=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen[str], timeout_s: float = LONG_S) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "the other process said nothing"
    return proc.stdout.readline().strip()


@pytest.fixture
def pools(database_url: str) -> Iterator[tuple[ConnectionPool, ConnectionPool]]:
    """Two pools: the connections of two processes (say, the API and a worker)."""
    first, second = open_pool(database_url, max_size=2), open_pool(database_url, max_size=2)
    yield first, second
    first.close()
    second.close()


# --- PostgreSQL -------------------------------------------------------------------------------------


def test_postgres_wakes_a_wait_on_another_connection(pools: tuple[ConnectionPool, ConnectionPool]) -> None:
    api, worker = PostgresJobSignal(pools[0]), PostgresJobSignal(pools[1])
    try:
        # The first wait cannot vouch for events sent before it listened: it says so once it listens.
        assert worker.wait("job-1", LONG_S) is False
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(worker.wait, "job-1", LONG_S)
            api.notify("job-1")
            assert waiting.result(timeout=LONG_S) is True
        api.notify("job-2")  # heard before anyone waits for it: still counts
        assert worker.wait("job-2", LONG_S) is True
        assert worker.wait("job-2", 0.05) is False  # taken once
        assert worker.wait("job-3", 0.05) is False  # nothing sent
    finally:
        worker.close()


def test_postgres_across_processes(database_url: str, pools: tuple[ConnectionPool, ConnectionPool]) -> None:
    here = PostgresJobSignal(pools[0])
    try:
        # Another process waits; this one notifies.
        waiter = other_process("postgres", database_url, "", "wait", "job-a")
        assert read_line(waiter) == "listening"
        here.notify("job-a")
        assert read_line(waiter) == "True"
        assert waiter.wait(timeout=LONG_S) == 0

        # This process waits; another one notifies.
        assert here.wait("warm-up", LONG_S) is False
        notifier = other_process("postgres", database_url, "", "notify", "job-b")
        assert notifier.wait(timeout=LONG_S) == 0
        assert here.wait("job-b", LONG_S) is True
    finally:
        here.close()


def test_postgres_a_lost_listen_connection_ends_waits_that_may_have_missed_events(
    database_url: str, pools: tuple[ConnectionPool, ConnectionPool]
) -> None:
    api, worker = PostgresJobSignal(pools[0]), PostgresJobSignal(pools[1], reconnect_s=0.3)
    try:
        assert worker.wait("warm-up", LONG_S) is False
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(worker.wait, "job-in-the-gap", LONG_S)
            with psycopg.connect(database_url, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
                ).fetchall()
            assert killed == [(True,)]
            # Its event might have come while nobody listened: the wait ends when LISTEN is back.
            assert waiting.result(timeout=LONG_S) is False
        api.notify("job-after")
        assert worker.wait("job-after", LONG_S) is True
    finally:
        worker.close()


# --- Redis --------------------------------------------------------------------------------------------


def test_redis_wakes_a_wait_on_another_connection(redis_namespace: str) -> None:
    api = RedisJobSignal(redis.Redis.from_url(REDIS_URL), namespace=redis_namespace)
    worker = RedisJobSignal(redis.Redis.from_url(REDIS_URL), namespace=redis_namespace)
    try:
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(worker.wait, "job-1", LONG_S)
            api.notify("job-1")
            assert waiting.result(timeout=LONG_S) is True
        api.notify("job-2")  # before anyone waits: kept for the wait
        assert worker.wait("job-2", LONG_S) is True
        assert worker.wait("job-2", 0.05) is False
        assert worker.wait("job-3", 0) is False
        api.notify("job-4")  # nobody will wait for it: it expires
        assert 0 < redis.Redis.from_url(REDIS_URL).ttl(f"{redis_namespace}:llamaparse:event:job-4") <= 600
    finally:
        api.close()
        worker.close()


def test_redis_a_wait_longer_than_the_socket_timeout_waits(redis_namespace: str) -> None:
    # A socket timeout shorter than the wait, as redis-py's default 5 s is shorter than a worker's
    # minute-long wait: one BLPOP of the whole wait would raise TimeoutError when the socket times out.
    short = f"{REDIS_URL}?socket_timeout=1"
    api = RedisJobSignal(redis.Redis.from_url(REDIS_URL), namespace=redis_namespace)
    worker = RedisJobSignal(redis.Redis.from_url(short), namespace=redis_namespace, sleep=_no_sleep)
    try:
        assert worker.wait("job-quiet", 1.5) is False  # no event: the whole wait, and no error
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(worker.wait, "job-late", LONG_S)
            assert worker.wait("job-other", 1.5) is False  # past the first slices of the wait
            api.notify("job-late")
            assert waiting.result(timeout=LONG_S) is True
    finally:
        api.close()
        worker.close()


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"the signal fell back to sleeping {seconds:.1f} s: a Redis call failed")


def test_redis_away_makes_a_wait_a_plain_sleep() -> None:
    slept: list[float] = []
    # Nothing listens on port 1: every Redis call fails at once.
    away = RedisJobSignal(redis.Redis.from_url("redis://127.0.0.1:1/0"), sleep=slept.append)
    assert away.wait("job-x", 2.0) is False
    assert len(slept) == 1 and 0 < slept[0] <= 2.0  # the rest of the wait; then the caller looks itself


def test_redis_across_processes(redis_namespace: str) -> None:
    here = RedisJobSignal(redis.Redis.from_url(REDIS_URL), namespace=redis_namespace)
    try:
        waiter = other_process("redis", REDIS_URL, redis_namespace, "wait", "job-a")
        assert read_line(waiter) == "listening"
        here.notify("job-a")
        assert read_line(waiter) == "True"
        assert waiter.wait(timeout=LONG_S) == 0

        notifier = other_process("redis", REDIS_URL, redis_namespace, "notify", "job-b")
        assert notifier.wait(timeout=LONG_S) == 0
        assert here.wait("job-b", LONG_S) is True
    finally:
        here.close()


def test_the_transport_follows_the_settings(pools: tuple[ConnectionPool, ConnectionPool]) -> None:
    assert isinstance(job_signal(Settings(_env_file=None), pools[0]), PostgresJobSignal)
    with_redis = job_signal(Settings(_env_file=None, redis_url=REDIS_URL), pools[0])
    assert isinstance(with_redis, RedisJobSignal)
    with_redis.close()


# --- the router's parser waits on it ----------------------------------------------------------------


def receiver(api_signal: JobSignal) -> FastAPI:
    """The webhook endpoint in miniature: verify the event, then wake the worker through the signal."""
    app = FastAPI()

    @app.post(WEBHOOK_PATH)
    async def hook(request: Request) -> Response:
        try:
            event = verify(
                await request.body(), request.headers.get(SIGNATURE_HEADER), SECRET, now=datetime.now(UTC)
            )
        except WebhookVerificationError:
            return Response(status_code=401)
        await asyncio.to_thread(api_signal.notify, event.data.job_id)
        return Response(status_code=200)

    return app


def test_with_a_public_url_the_routers_parser_is_woken_by_the_webhook(
    settings: Settings,
    pools: tuple[ConnectionPool, ConnectionPool],
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> None:
    api_signal = PostgresJobSignal(pools[0])  # the API process's side
    standin = llamaparse_api.create_app(faults=llamaparse_api.LlamaParseFaults(job_delay_s=0.05))
    with serving(receiver(api_signal)) as public_url, serving(standin) as base:
        webhooks = settings.model_copy(
            update={
                "llama_cloud_api_key": SecretStr("llx-standin"),
                "llama_cloud_base_url": base,
                "public_url": public_url,
                "llamaparse_webhook_secret": SecretStr(SECRET),
            }
        )
        with Runtime.open(webhooks) as rt:
            signal = rt.router.llamaparse_signal()
            assert signal.wait("warm-up", LONG_S) is False  # this process listens, as after its first job
            woken: list[bool] = []
            wait = signal.wait

            def recorded(job_id: str, timeout_s: float) -> bool:
                woken.append(wait(job_id, timeout_s))
                return woken[-1]

            signal.wait = recorded  # type: ignore[method-assign]
            data = (SAMPLES / "docker-plugins-volume.md").read_bytes()
            result = rt.router.real_parser().parse(
                data, filename="docker-plugins-volume.md", media_type="text/markdown"
            )
    # One wait, ended by the job's event (the fallback poll is a minute away).
    assert woken == [True]
    (job,) = standin.state.llamaparse.jobs.values()
    assert result.usage.vendor_job_id == job.id and job.status == "COMPLETED"
