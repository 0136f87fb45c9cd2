"""The API over the test database: a TestClient whose lifespan runs the workers in-process, users with
keys, and helpers to wait for jobs and to look behind the API (rows, blobs, temp files)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ingest.api.app import create_app
from ingest.config import Settings
from ingest.store.users import create_key, ensure_user
from workers.runtime import Runtime

FINAL = ("completed", "failed")
POLL_S = 0.1


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """A CLI run points logging at CliRunner's stream, which closes after it: undo that for later tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
def start_client(
    ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TestClient]]:
    """Start the app with extra INGEST_* settings, e.g. `start_client(MAX_UPLOAD_MB="1")`."""
    # A CLI test elsewhere may have pointed structlog at a captured stream that is closed since.
    structlog.reset_defaults()
    clients: list[TestClient] = []

    def start(**settings: str) -> TestClient:
        for name, value in settings.items():
            monkeypatch.setenv(f"INGEST_{name}", value)
        client = TestClient(create_app(Settings(_env_file=None)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(start_client: Callable[..., TestClient]) -> TestClient:
    return start_client()


@dataclass
class LiveServer:
    """The app under uvicorn on a loopback port: real HTTP, for what only a socket shows."""

    app: FastAPI
    url: str


@pytest.fixture
def start_server(
    ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., LiveServer]]:
    structlog.reset_defaults()
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**settings: str) -> LiveServer:
        for name, value in settings.items():
            monkeypatch.setenv(f"INGEST_{name}", value)
        app = create_app(Settings(_env_file=None))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread))
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(POLL_S)
        return LiveServer(app, f"http://127.0.0.1:{sock.getsockname()[1]}")

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join()


def runtime_of(client: TestClient | LiveServer) -> Runtime:
    return client.app.state.api.rt  # type: ignore[attr-defined]


def new_key(client: TestClient | LiveServer, name: str, *, admin: bool = False) -> dict[str, str]:
    """A user (created if new) and a fresh key for them, as request headers."""
    with runtime_of(client).pool.connection() as conn:
        key = create_key(conn, ensure_user(conn, name, is_admin=admin))
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def ada(client: TestClient) -> dict[str, str]:
    return new_key(client, "ada")


@pytest.fixture
def bob(client: TestClient) -> dict[str, str]:
    return new_key(client, "bob")


def upload(
    client: TestClient,
    headers: dict[str, str],
    content: bytes,
    filename: str = "notes.txt",
    content_type: str = "text/plain",
    **fields: str,
) -> httpx.Response:
    return client.post(
        "/v1/documents", headers=headers, files={"file": (filename, content, content_type)}, data=fields
    )


def wait_for_job(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    """Poll the job until it is completed or failed (pytest-timeout bounds a job that never ends)."""
    while True:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["status"] in FINAL:
            return job
        time.sleep(POLL_S)


def text_document(topic: str, paragraphs: int = 6) -> bytes:
    body = [
        f"{topic.capitalize()} paragraph {i}: notes about {topic} and how {topic} behaves."
        for i in range(paragraphs)
    ]
    return "\n\n".join(body).encode()


def temp_files(client: TestClient | LiveServer) -> list[Path]:
    tmp = runtime_of(client).settings.home / "tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def count_rows(client: TestClient | LiveServer, table: str) -> int:
    assert table in ("documents", "jobs", "chunks")
    with runtime_of(client).pool.connection() as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def blob_count(client: TestClient | LiveServer) -> int:
    root = runtime_of(client).settings.blob_dir
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def chunk_texts(client: TestClient | LiveServer) -> list[str]:
    with runtime_of(client).pool.connection() as conn:
        return [row[0] for row in conn.execute("SELECT text FROM chunks").fetchall()]


def error_of(response: httpx.Response) -> dict[str, str]:
    """The JSON error, checked for the contract's shape: a code and one line of message, no traceback."""
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] and error["message"], body
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    return error


class StreamedForm:
    """A multipart body produced chunk by chunk (never whole in memory), counting what the server pulled."""

    BOUNDARY = "streamed-form-boundary-7b1d"

    def __init__(self, filename: str, content_type: str, chunks: Iterator[bytes]) -> None:
        self.head = (
            f'--{self.BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self.tail = f"\r\n--{self.BOUNDARY}--\r\n".encode()
        self.chunks = chunks
        self.pulled = 0  # bytes of file content the server asked for

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.BOUNDARY}"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        for chunk in self.chunks:
            self.pulled += len(chunk)
            yield chunk
        yield self.tail


def repeated(block: bytes, total: int) -> Iterator[bytes]:
    """`total` bytes made of `block` repeated, one block at a time."""
    sent = 0
    while sent < total:
        piece = block[: total - sent]
        sent += len(piece)
        yield piece


def post_streamed(
    client: TestClient, headers: dict[str, str], form: StreamedForm, **extra: str
) -> httpx.Response:
    """POST the form through the ASGI app with a streamed request body (TestClient would read it whole).
    The app's lifespan is the one `client` started."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return await http.post(
                "/v1/documents", headers={**headers, "Content-Type": form.content_type, **extra}, content=form
            )

    return anyio.run(send)
