"""Production shape: the CLI enqueues through the real Redis on loopback, separate worker processes work."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def redis_env(ingest_env: dict[str, str], redis_namespace: str) -> dict[str, str]:
    return {**os.environ, **ingest_env, "REDIS_URL": REDIS_URL, "INGEST_BROKER_NAMESPACE": redis_namespace}


@pytest.fixture
def worker(
    redis_env: dict[str, str],
    tmp_path: Path,
    worker_process: Callable[..., AbstractContextManager[subprocess.Popen[bytes]]],
) -> Iterator[subprocess.Popen[bytes]]:
    with worker_process(redis_env, tmp_path / "worker.log") as proc:
        yield proc


def test_documents_flow_through_redis_to_a_separate_worker(
    redis_env: dict[str, str], worker: subprocess.Popen, tmp_path: Path, run_ingest: Run
) -> None:
    run = run_ingest
    added = run(redis_env, "add", str(SAMPLES))
    assert added.returncode == 0, added.stdout + added.stderr + (tmp_path / "worker.log").read_text()
    assert "6 completed" in added.stdout

    found = run(
        redis_env, "search", "The Docker daemon provides these paths to containers to consume.", "--json"
    )
    assert json.loads(found.stdout)["results"][0]["filename"] == "docker-plugins-volume.md"
    assert run(redis_env, "verify").returncode == 0


def test_worker_refuses_to_start_without_a_broker(ingest_env: dict[str, str], run_ingest: Run) -> None:
    run = run_ingest
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RABBITMQ_URL")} | ingest_env
    result = run(env, "worker", timeout=60)
    assert result.returncode != 0
    assert "needs REDIS_URL or RABBITMQ_URL" in result.stderr
