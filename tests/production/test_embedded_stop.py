"""`ingest serve` and `ingest worker` with the embedded PostgreSQL (no DATABASE_URL): stopped by SIGTERM or
SIGINT, they stop the server; killed by SIGKILL, they leave nothing that keeps it running once the next
command on that INGEST_HOME has come and gone. Real processes, a real INGEST_HOME each."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

INGEST = str(Path(sys.executable).parent / "ingest")
REDIS_URL = "redis://127.0.0.1:6379/0"
STOP_S = 60


def postgres_of(home: Path) -> list[int]:
    """Pids of the postgres processes serving the data directory under `home`."""
    pgdata = str((home / "pgdata").resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"postgres") and pgdata.encode() in b" ".join(cmdline):
            found.append(int(entry.name))
    return found


def wait_until(check, what: str, timeout: float = STOP_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def home_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_") and k not in ("DATABASE_URL",)}
    env.pop("REDIS_URL", None)
    env.pop("RABBITMQ_URL", None)
    # A short home: the server's socket lives in it, and a Unix socket path has a length limit.
    home = Path(f"/tmp/ingest-stop-{uuid.uuid4().hex[:8]}")
    env["INGEST_HOME"] = str(home)
    yield env
    for pid in postgres_of(home):  # never leave one behind, even when the test failed
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["rm", "-rf", str(home)], check=False)


def after_one_more_command(env: dict[str, str]) -> None:
    """What follows a crash: the next command joins (or restarts) the server, and leaves when done."""
    result = subprocess.run([INGEST, "budget", "show"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_serve_leaves_no_postgres_behind(home_env: dict[str, str], how: signal.Signals) -> None:
    home = Path(home_env["INGEST_HOME"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [INGEST, "serve", "--port", str(port)],
        env=home_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: _ready(port), "the API to be ready", timeout=120)
        assert postgres_of(home), "the embedded server should be running while the API serves"
        proc.send_signal(how)
        proc.wait(timeout=STOP_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if how == signal.SIGKILL:
        after_one_more_command(home_env)
    else:
        assert proc.returncode != 0 or how == signal.SIGINT
    wait_until(lambda: not postgres_of(home), "no postgres under INGEST_HOME")


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def broker_env(home_env: dict[str, str]) -> Iterator[dict[str, str]]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    namespace = f"ingest-test-{uuid.uuid4().hex[:8]}"
    yield {**home_env, "REDIS_URL": REDIS_URL, "INGEST_BROKER_NAMESPACE": namespace}
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)


@pytest.mark.redis
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_worker_leaves_no_postgres_behind(
    broker_env: dict[str, str], how: signal.Signals, tmp_path: Path
) -> None:
    home = Path(broker_env["INGEST_HOME"])
    note = tmp_path / "note.txt"
    note.write_text("A note about harbours and ferries.\n\nA second paragraph about the lighthouse.\n")
    proc = subprocess.Popen(
        [INGEST, "worker", "--processes", "1", "--threads", "1"],
        env=broker_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # The worker opens the database at its first message: give it one, and wait for it to be done.
        added = subprocess.run(
            [INGEST, "add", str(note)], env=broker_env, capture_output=True, text=True, timeout=180
        )
        assert added.returncode == 0, added.stdout + added.stderr
        assert postgres_of(home), "the worker should hold the embedded server"
        os.killpg(proc.pid, how)
        proc.wait(timeout=STOP_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if how == signal.SIGKILL:
        after_one_more_command(broker_env)
    wait_until(lambda: not postgres_of(home), "no postgres under INGEST_HOME")
