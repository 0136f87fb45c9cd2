"""The production shape of callbacks on their own threads: `ingest serve` and `ingest worker` through
Redis, a receiver that holds every callback, and another user's document that completes meanwhile."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration import test_callback_isolation as isolation
from tests.integration.test_callback_isolation import SECRET, StalledReceiver

stalled = isolation.stalled  # the receiver fixture: pytest finds fixtures in a module's namespace

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/0"
INGEST = str(Path(sys.executable).parent / "ingest")
Run = Callable[..., subprocess.CompletedProcess[str]]
WAIT_S = 90


@pytest.fixture
def env(ingest_env: dict[str, str]) -> Iterator[dict[str, str]]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    namespace = f"ingest-test-{uuid.uuid4().hex[:8]}"
    yield {
        **os.environ,
        **ingest_env,
        "REDIS_URL": REDIS_URL,
        "INGEST_BROKER_NAMESPACE": namespace,
        "INGEST_CALLBACK_SIGNING_SECRET": SECRET,
        "INGEST_OUTBOUND_ALLOW_NETWORKS": "127.0.0.0/8",
        "INGEST_CALLBACK_TIMEOUT_S": "120",  # the receiver holds its requests throughout the test
        "INGEST_CALLBACK_WORKER_THREADS": "1",
    }
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)


@pytest.fixture
def api(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(tmp_path / "api.log", "wb") as log:
        proc = subprocess.Popen(
            [INGEST, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + WAIT_S
            while True:
                assert proc.poll() is None, (tmp_path / "api.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "ingest serve did not start"
                try:
                    if httpx.get(f"{url}/health/live", trust_env=False).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait()


def key(run_ingest: Run, env: dict[str, str], user: str) -> dict[str, str]:
    created = run_ingest(env, "keys", "create", "--user", user)
    assert created.returncode == 0, created.stderr
    return {"Authorization": f"Bearer {created.stdout.strip()}"}


def wait_completed(api: str, headers: dict[str, str], job_id: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while (job := httpx.get(f"{api}/v1/jobs/{job_id}", headers=headers, trust_env=False).json())[
        "status"
    ] != "completed":
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"job {job_id} waited behind the stalled callbacks"
        time.sleep(0.2)


def test_worker_processes_deliver_callbacks_on_threads_of_their_own(
    env: dict[str, str],
    api: str,
    stalled: StalledReceiver,
    tmp_path: Path,
    worker_process: Callable[..., AbstractContextManager[subprocess.Popen[bytes]]],
    run_ingest: Run,
) -> None:
    ada, bob = key(run_ingest, env, "ada"), key(run_ingest, env, "bob")
    with worker_process(env, tmp_path / "worker.log"):  # one process, two ingestion threads
        try:
            sent = []
            for i in range(4):
                answer = httpx.post(
                    f"{api}/v1/documents",
                    headers=ada,
                    files={"file": (f"h{i}.txt", f"Harbour {i} notes about tides and boats.".encode())},
                    data={"callback_url": stalled.url},
                    trust_env=False,
                )
                assert answer.status_code == 202, answer.text
                sent.append(answer.json())
            for job in sent:
                wait_completed(api, ada, job["job_id"])
            stalled.wait_holding(1)  # four callbacks due: more than all the worker's threads

            other = httpx.post(
                f"{api}/v1/documents",
                headers=bob,
                files={"file": ("bob.txt", b"A document of bob's about lighthouses.")},
                trust_env=False,
            ).json()
            wait_completed(api, bob, other["job_id"])
            assert stalled.holding >= 1 and not stalled.release.is_set()
        finally:
            stalled.release.set()
