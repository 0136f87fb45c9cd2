"""Shared fixtures: one embedded PostgreSQL + pgvector per test session, a fresh database per test; the
shared Redis under a namespace of one test; ASGI apps (the vendor stand-ins) served on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis
import uvicorn
from psycopg.conninfo import make_conninfo
from starlette.types import ASGIApp

from costs.prices import PriceTable
from ingest.config import Settings
from ingest.db import embedded, migrate
from mocks import server
from mocks.faults import FaultPlan
from mocks.llamaparse_jobs import StandinState
from mocks.openai_api import Ledger
from workers.process import start_broker

if TYPE_CHECKING:
    from workers.runtime import Runtime

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def in_process_broker() -> None:
    """Each test starts with a fresh in-process broker, as `ingest add` without a broker would: what a test
    submits outside `serving` waits there, and never reaches a broker a developer's environment names."""
    start_broker(Settings(_env_file=None, redis_url=None, rabbitmq_url=None))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Connection URI of the session's embedded server.

    Its data lives outside pytest's temporary folders, which pytest prunes to the last three runs: a
    concurrent run must not delete the data of a server still in use.
    """
    folder = Path(tempfile.mkdtemp(prefix="ingest-test-pg-"))
    # Stopped before its folder goes: a server whose data folder is gone cannot be stopped at exit.
    with embedded.hold(folder / "pgdata") as uri:
        yield uri
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> str:
    name = "ingest_template"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    migrate.apply(make_conninfo(pg_server, dbname=name))
    return name


@pytest.fixture
def database_url(pg_server: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test (a copy of the session's template: fast)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield make_conninfo(pg_server, dbname=name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's settings or touches their data: the product's variables are cleared
    and INGEST_HOME is a folder of the test's own (a test that forgot `ingest_env` once migrated the
    home database of whoever ran the suite)."""
    for name in list(os.environ):
        if name.startswith("INGEST_") or name in (
            "DATABASE_URL",
            "REDIS_URL",
            "RABBITMQ_URL",
            "OPENAI_API_KEY",
            "LLAMA_CLOUD_API_KEY",
        ):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INGEST_HOME", str(tmp_path / "home"))


@pytest.fixture
def ingest_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment of a user running the product against the test database, with a clean home."""
    env = {"INGEST_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(ingest_env: dict[str, str]) -> Settings:
    return Settings(_env_file=None)


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    from workers.runtime import Runtime

    with Runtime.open(settings) as runtime:
        yield runtime


# --- Redis ------------------------------------------------------------------------------------------------
@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    """The Redis on loopback that every engineer's tests share (skips when it is not running)."""
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    yield client
    client.close()


@pytest.fixture
def redis_namespace(shared_redis: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone on the shared Redis (INGEST_BROKER_NAMESPACE), deleted after."""
    namespace = f"ingest-test-{uuid.uuid4().hex[:8]}"
    yield namespace
    for key in shared_redis.scan_iter(f"{namespace}*"):
        shared_redis.delete(key)


# --- ASGI apps on loopback: the vendor stand-ins ----------------------------------------------------------
@contextmanager
def _serve(app: ASGIApp) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # A short graceful shutdown: a request still hanging in a timeout fault must not hold the test.
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def serving() -> Callable[[ASGIApp], AbstractContextManager[str]]:
    """`with serving(app) as base_url:` the app on a free loopback port, served by uvicorn from a thread."""
    return _serve


@pytest.fixture
def no_fault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MOCKS_* variable of the developer's shell injects faults into this test's stand-ins."""
    for name in list(os.environ):
        if name.startswith("MOCKS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def point_real_clients_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """`point_real_clients_at(base_url)`: the SDKs' own variables, as a user sets them for `ingest mocks
    serve`; polls fast (no webhooks)."""

    def point(base_url: str) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-standin-key")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{base_url}/v1")
        monkeypatch.setenv("LLAMA_CLOUD_API_KEY", "llx-standin-key")
        monkeypatch.setenv("LLAMA_CLOUD_BASE_URL", base_url)
        monkeypatch.setenv("INGEST_LLAMAPARSE_POLL_INTERVAL_S", "0.02")
        monkeypatch.setenv("INGEST_LLAMAPARSE_MAX_POLL_INTERVAL_S", "0.1")

    return point


@pytest.fixture
def standins(
    ingest_env: dict[str, str],
    no_fault_env: None,
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
    point_real_clients_at: Callable[[str], None],
) -> Iterator[object]:
    """Both vendor stand-ins on a loopback port, with the real clients' variables pointing at them. Tests
    change `app.state.openai.state.injector.plan` (or LlamaParse's `state.plan`) to inject latency or faults."""
    app = server.create_app(FaultPlan())
    with serving(app) as base:
        point_real_clients_at(base)
        yield app


def _openai_records(app: object) -> Ledger:
    return app.state.openai.state.ledger  # type: ignore[attr-defined]


def _llamaparse_records(app: object) -> StandinState:
    return app.state.llamaparse.state.llamaparse  # type: ignore[attr-defined]


@pytest.fixture
def openai_records() -> Callable[[object], Ledger]:
    """`openai_records(app)`: what the OpenAI stand-in of `app` served."""
    return _openai_records


@pytest.fixture
def llamaparse_records() -> Callable[[object], StandinState]:
    """`llamaparse_records(app)`: the LlamaParse stand-in's jobs, deliveries, faults."""
    return _llamaparse_records


def _assert_ledger_is_what_the_standins_billed(
    conninfo: str,
    app: object,
    document_ids: Sequence[uuid.UUID],
    prices: PriceTable,
    model: str,
    *,
    unconfirmed_requests: int = 0,
) -> None:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT service, state, amount_usd, usage FROM cost_entries"
            " WHERE NOT simulated AND document_id = ANY(%s) ORDER BY id",
            (list(document_ids),),
        ).fetchall()
    states = {state for _, state, _, _ in rows}
    # Nothing held, nothing released; a call given up on after unconfirmed requests is charged `unknown`.
    assert states == {"charged"} or (unconfirmed_requests and states == {"charged", "unknown"}), states
    parses = [(amount, usage) for service, _, amount, usage in rows if service == "llamaparse"]
    embeds = [(amount, usage) for service, _, amount, usage in rows if service == "openai"]

    # LlamaParse bills jobs that complete: each one charged once, for the credits the stand-in charged.
    standin = _llamaparse_records(app)
    billed = {job.id: job.credits for job in standin.jobs.values() if job.credits is not None}
    assert len(parses) == len(document_ids)  # one parse charge per document, whatever was retried
    assert {usage["vendor_job_id"]: usage["credits"] for _, usage in parses} == billed
    for amount, usage in parses:
        assert amount == prices.credits_usd(usage["credits"])

    # OpenAI bills every request it served: as many requests and tokens in the ledger as it served.
    served = _openai_records(app).entries
    served_tokens = sum(entry.prompt_tokens for entry in served)
    charged_tokens = sum(usage["tokens"] for _, usage in embeds)
    assert sum(usage["requests"] for _, usage in embeds) == len(served) + unconfirmed_requests
    assert charged_tokens > served_tokens if unconfirmed_requests else charged_tokens == served_tokens
    for amount, usage in embeds:
        assert amount == prices.tokens_usd(usage["tokens"], model)
    total = sum((amount for amount, _ in parses + embeds), Decimal(0))
    bill = prices.credits_usd(int(sum(billed.values()))) + prices.tokens_usd(served_tokens, model)
    assert total > bill if unconfirmed_requests else total == bill


@pytest.fixture
def assert_ledger_is_what_the_standins_billed() -> Callable[..., None]:
    """`assert_ledger_is_what_the_standins_billed(conninfo, app, document_ids, prices, model)`: our real
    charges for these documents are, call for call, what the stand-ins recorded as served, priced by the
    price table: every billed call is in the ledger exactly once, and nothing else is.

    Except `unconfirmed_requests=` OpenAI requests whose answer our client stopped waiting for (a read
    timeout): the stand-in billed nothing for them, a real vendor may have, so the ledger charges them
    too (router.unsettled) and reads more than the stand-in's bill, never less."""
    return _assert_ledger_is_what_the_standins_billed
