"""The batch route in production shape: Redis, separate `ingest worker` processes, the OpenAI stand-in.
A worker killed (SIGKILL) while its batch runs loses nothing, and its successor makes no second batch."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.types import ASGIApp

from mocks import server
from mocks.faults import FaultPlan

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _until(check: Callable[[], bool], what: str, limit_s: float = 180) -> None:
    """Poll until `check` holds (a guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.2)


def _one(database_url: str, query: str) -> Any:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_a_worker_killed_while_its_batch_runs_loses_nothing_and_makes_no_second_batch(
    ingest_env: dict[str, str],
    redis_namespace: str,
    no_fault_env: None,
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
    worker_process: Callable[..., AbstractContextManager[subprocess.Popen[bytes]]],
    run_ingest: Callable[..., subprocess.CompletedProcess[str]],
    database_url: str,
    tmp_path: Path,
) -> None:
    app = server.create_app(FaultPlan())
    batches = app.state.openai.state.batches
    batches.delay_s = 3600  # in progress until the first worker is dead
    with serving(app) as base:
        env = {
            **os.environ,
            **ingest_env,
            "REDIS_URL": REDIS_URL,
            "INGEST_BROKER_NAMESPACE": redis_namespace,
            "OPENAI_API_KEY": "sk-standin-key",
            "OPENAI_BASE_URL": f"{base}/v1",
            "INGEST_OPENAI_EMBEDDING_DIMENSIONS": "64",
            "INGEST_SWEEP_INTERVAL_S": "0.5",
            "INGEST_BATCH_POLL_S": "0.1",
        }
        assert run_ingest(env, "mode", "set", "real", "--service", "openai").returncode == 0
        with worker_process(env, tmp_path / "first.log") as first:
            added = run_ingest(env, "add", str(SAMPLES), "--when-cheapest", "--no-wait")
            assert added.returncode == 0, added.stdout + added.stderr
            _until(
                lambda: (
                    _one(database_url, "SELECT count(*) FROM embedding_batches WHERE status = 'submitted'")
                    == 1
                ),
                "the batch to be sent",
            )
            assert "waiting for batch batch_" in run_ingest(env, "status", "--all").stdout
            os.killpg(first.pid, signal.SIGKILL)  # no shutdown: the worker dies with its batch in flight
            first.wait()

        batches.delay_s = 0  # the batch finishes while no worker is there
        with worker_process(env, tmp_path / "second.log"):
            _until(
                lambda: _one(database_url, "SELECT count(*) FROM jobs WHERE status <> 'completed'") == 0,
                "every job to complete",
            )
    assert len(batches.batches) == 1
    answered = Counter(int(c) for c in batches.completed_lines())
    chunk_ids = {int(r) for r in _rows(database_url, "SELECT id FROM chunks")}
    assert set(answered) == chunk_ids and set(answered.values()) == {1}
    assert _one(database_url, "SELECT count(*) FROM chunks WHERE space_id IS NULL") == 0
    states = {
        r for r in _rows(database_url, "SELECT DISTINCT state FROM cost_entries WHERE service = 'openai'")
    }
    assert states == {"charged"}
    billed = _one(
        database_url, "SELECT sum((usage->>'tokens')::bigint) FROM cost_entries WHERE service = 'openai'"
    )
    assert billed == batches.billed_tokens


def _rows(database_url: str, query: str) -> list[Any]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute(query).fetchall()]
