"""Request bodies are bounded before the key is checked and before anything is parsed, per route.

The review sent a 300 MB JSON body with no key: it was read whole before the 401. Here the server must
answer 413 having pulled at most the route's limit (and one chunk) of the body, or nothing at all when
`Content-Length` already says it is too large.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import LiveServer, error_of, new_key, text_document, upload

KB = 1024
MB = 1024 * KB
CHUNK = 64 * KB


class CountedBody:
    """A JSON-looking body produced chunk by chunk, counting how much of it the server asked for."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"query": "'
        while self.pulled < self.total:
            piece = b"x" * min(CHUNK, self.total - self.pulled)
            self.pulled += len(piece)
            yield piece
        yield b'"}'


def send_counted(
    client: TestClient, method: str, path: str, body: CountedBody, headers: dict[str, str]
) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return await http.request(
                method, path, headers={"Content-Type": "application/json", **headers}, content=body
            )

    return anyio.run(send)


@pytest.mark.parametrize(
    ("method", "path", "limit_kb"),
    [("POST", "/v1/search", 256), ("PUT", "/v1/router", 256), ("POST", "/v1/webhooks/llamaparse", 64)],
)
def test_an_oversized_json_body_without_a_key_is_413_after_reading_at_most_the_limit(
    client: TestClient, method: str, path: str, limit_kb: int
) -> None:
    body = CountedBody(64 * MB)
    answer = send_counted(client, method, path, body, {})
    assert answer.status_code == 413 and error_of(answer)["code"] == "too_large"
    assert f"limit of {limit_kb} KB" in error_of(answer)["message"]
    assert body.pulled <= limit_kb * KB + CHUNK  # not the other 63.7 MB


def test_a_declared_length_over_the_limit_is_413_with_nothing_read(client: TestClient) -> None:
    body = CountedBody(300 * MB)
    answer = send_counted(client, "POST", "/v1/search", body, {"Content-Length": str(300 * MB + 14)})
    assert answer.status_code == 413 and error_of(answer)["code"] == "too_large"
    assert body.pulled == 0


def test_over_a_socket_the_413_comes_before_the_body_is_sent(start_server: Callable[..., LiveServer]) -> None:
    # Headers announcing 300 MB and no body yet: the answer arrives without the server waiting for it.
    live = start_server()
    port = int(live.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {300 * MB}\r\n\r\n".encode()
            + b'{"query": "'
        )
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"too_large"' in answer


def read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer with a Content-Length body, read off the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_each_route_has_its_own_limit(start_client: Callable[..., TestClient]) -> None:
    client = start_client(MAX_JSON_BODY_KB="4")
    ada = new_key(client, "ada")
    # An upload streams under its own limit (INGEST_MAX_UPLOAD_MB), far above the JSON routes' 4 KB.
    assert upload(client, ada, text_document("tides", paragraphs=400)).status_code == 202
    padded = {"query": "tides " * 1000, "top_k": 3}  # about 6 KB
    refused = client.post("/v1/search", headers=ada, json=padded)
    assert refused.status_code == 413 and "4 KB" in error_of(refused)["message"]
    assert client.post("/v1/search", headers=ada, json={"query": "tides", "top_k": 3}).status_code == 200
