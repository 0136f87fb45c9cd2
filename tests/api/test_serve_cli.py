"""`ingest keys create` and `ingest serve` as an operator runs them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ingest.cli.main import app as cli

INGEST = str(Path(sys.executable).parent / "ingest")


def create_key(*args: str) -> str:
    result = CliRunner().invoke(cli, ["keys", "create", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("ik_") and "\n" not in key
    assert "shown once" in result.stderr
    return key


def test_a_created_key_authenticates_and_only_an_admin_key_switches_modes(client: TestClient) -> None:
    user = {"Authorization": f"Bearer {create_key('--user', 'ada')}"}
    admin = {"Authorization": f"Bearer {create_key('--user', 'root', '--admin')}"}
    assert client.get("/v1/documents", headers=user).json()["documents"] == []
    assert client.put("/v1/router", headers=user, json={"mode": "hybrid"}).status_code == 403
    assert client.put("/v1/router", headers=admin, json={"mode": "hybrid"}).status_code == 200
    with client.app.state.api.rt.pool.connection() as conn:  # type: ignore[attr-defined]
        stored = [row[0] for row in conn.execute("SELECT key_hash FROM api_keys").fetchall()]
    assert len(stored) == 2 and all(user["Authorization"][7:].encode() not in bytes(h) for h in stored)


def test_each_key_is_new_and_all_of_them_work(client: TestClient) -> None:
    keys = {create_key("--user", "ada") for _ in range(3)}
    assert len(keys) == 3
    for key in keys:
        assert client.get("/v1/router", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_an_empty_user_name_is_one_line_on_stderr() -> None:
    result = CliRunner().invoke(cli, ["keys", "create", "--user", " "])
    assert result.exit_code != 0 and result.stderr.startswith("error:")


@pytest.fixture
def served(ingest_env: dict[str, str]) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [INGEST, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **ingest_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ingest serve exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/health/live").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait()


def test_ingest_serve_answers_with_a_key_from_ingest_keys_create(served: str) -> None:
    headers = {"Authorization": f"Bearer {create_key('--user', 'ada')}"}
    files = {"file": ("n.txt", b"served words", "text/plain")}
    sent = httpx.post(f"{served}/v1/documents", headers=headers, files=files)
    assert sent.status_code == 202
    job_url = f"{served}/v1/jobs/{sent.json()['job_id']}"
    while (job := httpx.get(job_url, headers=headers).json())["status"] not in ("completed", "failed"):
        time.sleep(0.2)
    assert job["status"] == "completed"  # the embedded default: workers run inside `ingest serve`
    assert httpx.get(f"{served}/v1/documents", headers={"Authorization": "Bearer nope"}).status_code == 401
