"""Every error the API answers: JSON `{"error": {code, message}}`, one line, the right status, nothing left."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import (
    LiveServer,
    StreamedForm,
    blob_count,
    count_rows,
    error_of,
    new_key,
    post_streamed,
    repeated,
    temp_files,
    text_document,
    upload,
)

MB = 1024 * 1024


def nothing_left(client: TestClient | LiveServer) -> None:
    assert count_rows(client, "documents") == 0
    assert blob_count(client) == 0
    assert temp_files(client) == []


def multipart(*parts: str, boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    body = "".join(f"--{boundary}\r\n{part}\r\n" for part in parts) + f"--{boundary}--\r\n"
    return body.encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


FILE_PART = 'Content-Disposition: form-data; name="file"; filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nhello there'


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"file": "x"}', "application/json"),
        (b"file=x", "application/x-www-form-urlencoded"),
        (b"--x\r\n", "multipart/form-data"),  # no boundary
        (
            b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhalf a bo',
            "multipart/form-data; boundary=b0undary",
        ),  # ends before its closing boundary
        (b"this is not multipart at all", "multipart/form-data; boundary=b0undary"),
        (b"", "multipart/form-data; boundary=b0undary"),
    ],
)
def test_a_body_that_is_not_a_complete_form_is_400(
    client: TestClient, ada: dict[str, str], body: bytes, content_type: str
) -> None:
    answer = client.post("/v1/documents", headers={**ada, "Content-Type": content_type}, content=body)
    assert answer.status_code == 400, answer.text
    assert error_of(answer)["code"] == "bad_request"
    nothing_left(client)


@pytest.mark.parametrize(
    ("parts", "says"),
    [
        ((), "no `file` part"),
        (('Content-Disposition: form-data; name="metadata"\r\n\r\n{}',), "no `file` part"),
        ((FILE_PART, FILE_PART), "exactly one"),
        ((FILE_PART, 'Content-Disposition: form-data; name="owner"\r\n\r\nbob'), "unexpected form field"),
        ((FILE_PART, 'Content-Disposition: form-data; name="metadata"\r\n\r\n[1, 2]'), "JSON object"),
        ((FILE_PART, 'Content-Disposition: form-data; name="metadata"\r\n\r\n{"a": '), "JSON object"),
        ((FILE_PART, 'Content-Disposition: form-data; name="metadata"\r\n\r\n{"a": "\\u0000"}'), "NUL"),
        ((FILE_PART, 'Content-Disposition: form-data; name="metadata"\r\n\r\n{"a": "\\ud800"}'), "Unicode"),
        (
            (
                FILE_PART,
                'Content-Disposition: form-data; name="metadata"\r\n\r\n' + '{"a":' * 40 + "1" + "}" * 40,
            ),
            "nested",
        ),
        (
            (FILE_PART, 'Content-Disposition: form-data; name="metadata"\r\n\r\n' + "[" * 60_000),
            "JSON object",
        ),
        (
            (FILE_PART, 'Content-Disposition: form-data; name="callback_url"\r\n\r\nftp://example.com/x'),
            "http",
        ),
        ((FILE_PART, 'Content-Disposition: form-data; name="callback_url"\r\n\r\nnot a url'), "http"),
    ],
)
def test_bad_form_fields_are_400_with_a_clear_message(
    client: TestClient, ada: dict[str, str], parts: tuple[str, ...], says: str
) -> None:
    body, headers = multipart(*parts)
    answer = client.post("/v1/documents", headers={**ada, **headers}, content=body)
    assert answer.status_code == 400, answer.text
    assert says in error_of(answer)["message"]
    nothing_left(client)


def test_a_form_field_over_its_limit_is_413(client: TestClient, ada: dict[str, str]) -> None:
    body, headers = multipart(
        FILE_PART, 'Content-Disposition: form-data; name="metadata"\r\n\r\n' + " " * 70_000
    )
    answer = client.post("/v1/documents", headers={**ada, **headers}, content=body)
    assert answer.status_code == 413 and "metadata" in error_of(answer)["message"]
    nothing_left(client)


def test_malformed_requests_elsewhere_are_400(client: TestClient, ada: dict[str, str]) -> None:
    cases = [
        client.post("/v1/search", headers={**ada, "Content-Type": "application/json"}, content=b"{not json"),
        client.post("/v1/search", headers=ada, json=["query"]),
        client.get("/v1/documents/not-a-uuid", headers=ada),
        client.get("/v1/jobs/123", headers=ada),
        client.get("/v1/documents", headers=ada, params={"limit": 0}),
        client.get("/v1/costs", headers=ada, params={"date": "2026-13-45"}),
        client.put("/v1/router", headers=new_key(client, "root", admin=True), json={"mode": "turbo"}),
    ]
    for answer in cases:
        assert answer.status_code == 400, answer.request.url
        assert error_of(answer)["code"] == "bad_request"


def test_unknown_paths_and_methods_are_json_errors(client: TestClient, ada: dict[str, str]) -> None:
    missing = client.get("/v1/nothing-here", headers=ada)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = client.patch("/v1/documents", headers=ada)
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"


def test_a_type_the_bytes_do_not_show_is_415(client: TestClient, ada: dict[str, str]) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(300)
    answer = upload(client, ada, png, "scan.pdf", "application/pdf")
    assert answer.status_code == 415
    assert error_of(answer)["code"] == "unsupported_media_type"
    nothing_left(client)


def test_an_empty_file_is_422(client: TestClient, ada: dict[str, str]) -> None:
    answer = upload(client, ada, b"", "empty.txt")
    assert answer.status_code == 422
    assert "empty" in error_of(answer)["message"].lower()
    nothing_left(client)


@pytest.fixture
def small_limit(start_client: Callable[..., TestClient]) -> TestClient:
    return start_client(MAX_UPLOAD_MB="1")


def test_a_file_over_the_limit_is_413(small_limit: TestClient) -> None:
    ada = new_key(small_limit, "ada")
    answer = upload(small_limit, ada, b"word " * (MB // 5 + 1), "big.txt")
    assert answer.status_code == 413
    assert error_of(answer)["code"] == "too_large" and "1 MB" in error_of(answer)["message"]
    nothing_left(small_limit)
    # Exactly at the limit is fine.
    assert upload(small_limit, ada, b"word " * (MB // 5) + b"x" * (MB % 5), "fits.txt").status_code == 202


def test_a_streamed_upload_stops_being_read_past_the_limit(small_limit: TestClient) -> None:
    ada = new_key(small_limit, "ada")
    form = StreamedForm("huge.txt", "text/plain", repeated(b"streamed text " * 4096, 200 * MB))
    answer = post_streamed(small_limit, ada, form)
    assert answer.status_code == 413
    assert form.pulled < 2 * MB  # the remaining ~198 MB were never asked for
    nothing_left(small_limit)


def test_a_declared_length_over_the_limit_is_413_before_reading(small_limit: TestClient) -> None:
    ada = new_key(small_limit, "ada")
    form = StreamedForm("huge.pdf", "application/pdf", repeated(b"%PDF-1.7\n" + bytes(8183), 110_000_000))
    answer = post_streamed(small_limit, ada, form, **{"Content-Length": str(110_000_000 + 200)})
    assert answer.status_code == 413
    assert form.pulled == 0
    nothing_left(small_limit)


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_over_a_real_socket_the_client_reads_its_413(
    start_server: Callable[..., LiveServer], declare_length: bool
) -> None:
    # The server answers without reading the rest and the connection drains it, so a client that sends the
    # whole body before reading (as httpx and most do) still gets the 413 rather than a reset.
    live = start_server(MAX_UPLOAD_MB="1")
    form = StreamedForm("huge.txt", "text/plain", repeated(b"over the limit " * 4096, 24 * MB))
    headers = {**new_key(live, "ada"), "Content-Type": form.content_type}
    if declare_length:
        headers["Content-Length"] = str(len(form.head) + 24 * MB + len(form.tail))

    def body() -> Iterator[bytes]:
        yield form.head
        yield from form.chunks
        yield form.tail

    answer = httpx.post(f"{live.url}/v1/documents", headers=headers, content=body(), timeout=60)
    assert answer.status_code == 413 and error_of(answer)["code"] == "too_large"
    assert httpx.get(f"{live.url}/health/ready").status_code == 200
    nothing_left(live)


def test_a_client_that_disconnects_mid_upload_leaves_no_temp_file(
    client: TestClient, ada: dict[str, str]
) -> None:
    form = StreamedForm("notes.txt", "text/plain", iter(()))
    messages = [
        {"type": "http.request", "body": form.head, "more_body": True},
        {"type": "http.request", "body": b"half of a file " * 4096, "more_body": True},
    ]
    spooled: list[list[Path]] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        spooled.append(temp_files(client))  # what was on disk when the client went away
        return {"type": "http.disconnect"}

    answers: list[dict] = []

    async def send(message: dict) -> None:
        answers.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in ada.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/documents",
        "raw_path": b"/v1/documents",
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-type", form.content_type.encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("api", 80),
    }
    anyio.run(client.app, scope, receive, send)
    assert len(spooled[0]) == 1  # the upload was being written to a temporary file…
    assert answers[0]["status"] == 400
    nothing_left(client)  # …which is gone


def test_an_upload_is_streamed_to_disk_not_held_in_memory(client: TestClient, ada: dict[str, str]) -> None:
    # 48 MB with ELF magic: streamed, hashed and written to a temporary file, then refused by its bytes (415),
    # so what is measured is the upload path alone (no worker parses it).
    def chunks() -> Iterator[bytes]:
        yield b"\x7fELF" + os.urandom(64 * 1024 - 4)
        yield from (os.urandom(64 * 1024) for _ in range(48 * 16 - 1))

    tracemalloc.start()
    try:
        answer = post_streamed(client, ada, StreamedForm("blob.bin", "application/octet-stream", chunks()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 415
    assert peak < 8 * MB, f"peak traced memory {peak / MB:.1f} MB for a 48 MB upload"
    nothing_left(client)


def test_over_the_rate_limit_is_429_with_retry_after(start_client: Callable[..., TestClient]) -> None:
    client = start_client(UPLOADS_PER_MINUTE="2", SEARCHES_PER_MINUTE="3")
    ada, bob = new_key(client, "ada"), new_key(client, "bob")
    assert [upload(client, ada, text_document(f"t{i}")).status_code for i in range(2)] == [202, 202]
    limited = upload(client, ada, text_document("t2"))
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert count_rows(client, "documents") == 2  # the refused upload stored nothing
    assert upload(client, bob, text_document("t2")).status_code == 202  # limits are per user

    searches = [client.post("/v1/search", headers=ada, json={"query": "t"}).status_code for _ in range(4)]
    assert searches == [200, 200, 200, 429]
    assert temp_files(client) == []


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(
    client: TestClient, ada: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.api.routes import search as search_route

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals: /srv/db password=hunter2")

    monkeypatch.setattr(search_route, "search_in_space", broken)
    answer = client.post("/v1/search", headers=ada, json={"query": "x"})
    assert answer.status_code == 500
    assert error_of(answer) == {"code": "internal_error", "message": "internal error; it has been logged"}
