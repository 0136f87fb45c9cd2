"""RabbitMQ as the broker: the CLI enqueues through RABBITMQ_URL, a separate `ingest worker` process works.
Each run has a virtual host of its own (queue names are fixed, so a shared one would let concurrent runs
take each other's messages), deleted after."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

pytestmark = pytest.mark.rabbitmq
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


RABBITMQ = ("127.0.0.1", 5672)


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@pytest.fixture
def vhost() -> Iterator[str]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    try:
        socket.create_connection(RABBITMQ, timeout=2).close()
    except OSError:
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672 (.ci/run starts it)")
    name = f"ingest-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture
def rabbit_env(ingest_env: dict[str, str], vhost: str) -> dict[str, str]:
    return {
        **os.environ,
        **ingest_env,
        "RABBITMQ_URL": f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/{vhost}",
    }


@pytest.fixture
def worker(
    rabbit_env: dict[str, str],
    tmp_path: Path,
    worker_process: Callable[..., AbstractContextManager[subprocess.Popen[bytes]]],
) -> Iterator[subprocess.Popen[bytes]]:
    with worker_process(rabbit_env, tmp_path / "worker.log") as proc:
        yield proc


def queue_messages(vhost: str) -> dict[str, int]:
    rows = rabbitmqctl("list_queues", "-p", vhost, "--no-table-headers", "name", "messages").splitlines()
    return {name: int(count) for name, count in (row.split() for row in rows if row.strip())}


def test_documents_flow_through_rabbitmq_to_a_separate_worker(
    rabbit_env: dict[str, str],
    vhost: str,
    worker: subprocess.Popen,
    tmp_path: Path,
    run_ingest: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    run = run_ingest
    added = run(rabbit_env, "add", str(SAMPLES))
    worker_log = (tmp_path / "worker.log").read_text()
    assert added.returncode == 0, added.stdout + added.stderr + worker_log
    assert "6 completed" in added.stdout
    assert '"broker": "RabbitmqBroker"' in worker_log  # the worker took them from RabbitMQ, not in-process

    found = run(
        rabbit_env, "search", "The Docker daemon provides these paths to containers to consume.", "--json"
    )
    assert json.loads(found.stdout)["results"][0]["filename"] == "docker-plugins-volume.md"
    assert run(rabbit_env, "verify").returncode == 0
    # Every message was taken and acknowledged: none waits, none was given up.
    queues = queue_messages(vhost)
    assert queues.get("ingest") == 0 and queues.get("ingest.XQ", 0) == 0, queues
