"""A mode switch reaches a running worker process: no restart, the next job uses the new mode.

`ingest worker` runs as a separate OS process on the real Redis; the OpenAI stand-in is served from this
test. A first document is embedded in mock mode; `ingest mode set real --service openai`; a second
document, handled by the same worker process, is embedded by the stand-in into the real space."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg
import pytest
from starlette.types import ASGIApp

from mocks import openai_api
from mocks.faults import FaultPlan

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
MODE_CACHE_S = 0.2  # how long a process may trust its last read of the modes


@pytest.fixture
def standin(serving: Callable[[ASGIApp], AbstractContextManager[str]]) -> Iterator[tuple[object, str]]:
    app = openai_api.create_app(FaultPlan())
    with serving(app) as base:
        yield app, base


@pytest.fixture
def env(ingest_env: dict[str, str], standin: tuple[object, str], redis_namespace: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MOCKS_")},
        **ingest_env,
        "REDIS_URL": REDIS_URL,
        "INGEST_BROKER_NAMESPACE": redis_namespace,
        "INGEST_MODE_CACHE_S": str(MODE_CACHE_S),
        "OPENAI_API_KEY": "sk-standin-key",
        "OPENAI_BASE_URL": f"{standin[1]}/v1",
    }


@pytest.fixture
def worker(
    env: dict[str, str],
    tmp_path: Path,
    worker_process: Callable[..., AbstractContextManager[subprocess.Popen[bytes]]],
) -> Iterator[subprocess.Popen[bytes]]:
    with worker_process(env, tmp_path / "worker.log") as proc:
        yield proc


def spaces_of(conninfo: str, filename: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT DISTINCT s.model FROM chunks c JOIN documents d ON d.id = c.document_id"
            " JOIN embedding_spaces s ON s.id = c.space_id WHERE d.filename = %s",
            (filename,),
        ).fetchall()
    return {r[0] for r in rows}


def test_the_next_job_uses_the_new_mode_without_a_restart(
    env: dict[str, str],
    worker: subprocess.Popen,
    standin: tuple[object, str],
    tmp_path: Path,
    run_ingest: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    ingest = run_ingest
    app, _ = standin
    calls = app.state.ledger  # type: ignore[attr-defined]
    conninfo = env["DATABASE_URL"]
    for name in ("before.txt", "after.txt"):
        (tmp_path / name).write_text(f"{name}: " + "lanterns glow over the quiet harbour at dusk. " * 40)

    first = ingest(env, "add", str(tmp_path / "before.txt"))
    assert first.returncode == 0, first.stdout + first.stderr + (tmp_path / "worker.log").read_text()
    assert spaces_of(conninfo, "before.txt") == {"mock-lexical-v1"}
    assert calls.requests == 0

    switched = ingest(env, "mode", "set", "real", "--service", "openai")
    assert switched.returncode == 0, switched.stderr
    time.sleep(MODE_CACHE_S)  # the longest any process may go on trusting its earlier read

    second = ingest(env, "add", str(tmp_path / "after.txt"))
    assert second.returncode == 0, second.stdout + second.stderr + (tmp_path / "worker.log").read_text()
    assert spaces_of(conninfo, "after.txt") == {"text-embedding-3-small"}
    assert calls.requests >= 1  # the stand-in made those vectors
    assert worker.poll() is None  # the same worker process, never restarted
    assert spaces_of(conninfo, "before.txt") == {"mock-lexical-v1"}  # the first document is untouched
