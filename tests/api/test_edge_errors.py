"""No 500 for what a client sends, no connection reset for any 500, and 503 while the database is away."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from ingest.store import documents
from tests.api.conftest import (
    LiveServer,
    count_rows,
    error_of,
    new_key,
    text_document,
    upload,
    wait_for_job,
)

WAIT_S = 60


@pytest.mark.parametrize(
    "metadata",
    ['{"score": NaN}', '{"a": Infinity}', '{"a": [-Infinity]}', '{"big": 1e400}', '{"deep": {"x": -1e999}}'],
)
def test_non_finite_numbers_in_metadata_are_400(
    client: TestClient, ada: dict[str, str], metadata: str
) -> None:
    answer = upload(client, ada, text_document("finite"), metadata=metadata)
    assert answer.status_code == 400
    assert "finite" in error_of(answer)["message"]
    assert count_rows(client, "documents") == 0


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length body: its status and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            raise ConnectionError("the server closed the connection")
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        piece = sock.recv(4096)
        if not piece:
            raise ConnectionError("the server closed the connection")
        body += piece
    return int(lines[0].split()[1]), body


def test_a_500_keeps_the_connection_open_for_the_next_request(
    start_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = start_server()
    ada = new_key(live, "ada")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug on the server's side")

    monkeypatch.setattr(documents, "list_for_owner", broken)
    port = int(live.url.rsplit(":", 1)[1])
    request = (
        f"GET /v1/documents HTTP/1.1\r\nHost: api\r\nAuthorization: {ada['Authorization']}\r\n\r\n".encode()
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        answers = []
        for _ in range(2):  # both on the one keep-alive connection
            sock.sendall(request)
            answers.append(read_answer(sock))
    for status, body in answers:
        assert status == 500
        assert b'"internal_error"' in body and b"a bug" not in body


@pytest.fixture
def outage(pg_server: str, database_url: str) -> Iterator[Callable[[bool], None]]:
    """Take the test's database away (refuse connections, cut open ones) and bring it back."""
    name = conninfo_to_dict(database_url)["dbname"]

    def set_down(down: bool) -> None:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {'false' if down else 'true'}")
            if down:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )

    yield set_down
    set_down(False)


def test_a_database_outage_answers_503_with_retry_after_and_then_recovers(
    start_client: Callable[..., TestClient], outage: Callable[[bool], None]
) -> None:
    client = start_client(DB_WAIT_S="2")
    ada = new_key(client, "ada")
    sent = upload(client, ada, text_document("outage")).json()
    assert wait_for_job(client, ada, sent["job_id"])["status"] == "completed"

    outage(True)
    answer = client.get(f"/v1/jobs/{sent['job_id']}", headers=ada)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"].isdigit()
    assert error_of(answer)["code"] == "database_unavailable"

    outage(False)
    deadline = time.monotonic() + WAIT_S
    while (status := client.get(f"/v1/jobs/{sent['job_id']}", headers=ada).status_code) != 200:
        assert status == 503 and time.monotonic() < deadline
        time.sleep(0.2)
