"""Outbound callbacks end to end: a document uploaded with a `callback_url` through the API, processed by
the in-process workers, and a receiver on loopback that checks each POST with the documented helper."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingest.errors import UnreadableDocument
from ingest.store import webhooks
from router.parser_mock import MockParser
from tests.api import conftest as api
from tests.api.conftest import new_key, runtime_of, text_document, upload, wait_for_job
from workers.callback_signing import verify

start_client = api.start_client  # the API's app fixture: pytest finds fixtures in a module's namespace

SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
WAIT_S = 30


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on loopback. It answers each POST with the next of `statuses` (then 200)."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int) -> list[Received]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} callbacks arrived, expected {count}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/ingest"
    yield state
    server.shutdown()
    thread.join()


@pytest.fixture
def client(start_client: Callable[..., TestClient]) -> TestClient:
    # The receivers listen on loopback, which only an operator's allow-list lets callbacks reach.
    return start_client(
        CALLBACK_SIGNING_SECRET=SECRET, CALLBACK_BACKOFF_S="0.05", OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8"
    )


def attempts(client: TestClient, document_id: str) -> list[tuple[int, int | None, bool]]:
    with runtime_of(client).pool.connection() as conn:
        rows = webhooks.attempts_for_document(conn, document_id)  # type: ignore[arg-type]
    return [(a.attempt, a.status_code, a.error is None) for a in rows]


def settle() -> None:
    """Long enough for a retry that should not happen (backoff 0.05 s) to show up."""
    time.sleep(0.5)


def test_a_completed_document_gets_one_signed_callback(client: TestClient, receiver: Receiver) -> None:
    ada = new_key(client, "ada")
    sent = upload(client, ada, text_document("glaciers"), callback_url=receiver.url).json()
    assert wait_for_job(client, ada, sent["job_id"])["status"] == "completed"

    (delivery,) = receiver.wait_for(1)
    event = verify(SECRET, delivery.headers, delivery.body)  # the helper the docs tell receivers to copy
    document = client.get(f"/v1/documents/{sent['document_id']}", headers=ada).json()
    assert event["type"] == "document.completed"
    assert event["data"] == {
        "document_id": sent["document_id"],
        "job_id": sent["job_id"],
        "status": "completed",
        "error": None,
        "chunks": document["chunks"],
        "cost_usd": document["cost_usd"],
    }
    assert document["chunks"] > 0
    assert delivery.headers["webhook-id"].startswith("msg_")
    settle()
    assert len(receiver.received) == 1
    assert attempts(client, sent["document_id"]) == [(1, 200, True)]


def test_a_failing_receiver_is_retried_with_the_same_id(client: TestClient, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    ada = new_key(client, "ada")
    sent = upload(client, ada, text_document("estuaries"), callback_url=receiver.url).json()
    wait_for_job(client, ada, sent["job_id"])

    deliveries = receiver.wait_for(3)
    assert [verify(SECRET, d.headers, d.body)["type"] for d in deliveries] == ["document.completed"] * 3
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1  # the receiver's idempotency key
    assert len({d.body for d in deliveries}) == 1
    settle()
    assert len(receiver.received) == 3
    assert attempts(client, sent["document_id"]) == [(1, 500, False), (2, 503, False), (3, 200, True)]


def test_attempts_stop_at_the_configured_maximum(
    start_client: Callable[..., TestClient], receiver: Receiver
) -> None:
    client = start_client(
        CALLBACK_SIGNING_SECRET=SECRET,
        CALLBACK_BACKOFF_S="0.05",
        CALLBACK_MAX_ATTEMPTS="2",
        OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8",
    )
    receiver.statuses = [500] * 10
    ada = new_key(client, "ada")
    sent = upload(client, ada, text_document("deltas"), callback_url=receiver.url).json()
    wait_for_job(client, ada, sent["job_id"])

    receiver.wait_for(2)
    settle()
    assert len(receiver.received) == 2
    assert attempts(client, sent["document_id"]) == [(1, 500, False), (2, 500, False)]


def test_a_failed_document_gets_document_failed(
    client: TestClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreadable(self: MockParser, data: bytes, *, filename: str, media_type: str) -> Any:
        raise UnreadableDocument("page 2 is encrypted")

    monkeypatch.setattr(MockParser, "parse", unreadable)
    ada = new_key(client, "ada")
    sent = upload(client, ada, text_document("fjords"), callback_url=receiver.url).json()
    assert wait_for_job(client, ada, sent["job_id"])["status"] == "failed"

    (delivery,) = receiver.wait_for(1)
    event = verify(SECRET, delivery.headers, delivery.body)
    assert event["type"] == "document.failed"
    assert event["data"]["status"] == "failed"
    assert event["data"]["error"] == "page 2 is encrypted"
    assert event["data"]["chunks"] == 0
    assert (event["data"]["document_id"], event["data"]["job_id"]) == (sent["document_id"], sent["job_id"])


def test_no_callback_url_no_callback(client: TestClient, receiver: Receiver) -> None:
    ada = new_key(client, "ada")
    sent = upload(client, ada, text_document("moraines")).json()
    wait_for_job(client, ada, sent["job_id"])
    settle()
    assert receiver.received == []
    assert attempts(client, sent["document_id"]) == []


def test_without_a_signing_secret_nothing_unsigned_is_sent(
    start_client: Callable[..., TestClient], receiver: Receiver
) -> None:
    client = start_client(CALLBACK_BACKOFF_S="0.05", OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8")
    ada = new_key(client, "ada")
    sent = upload(client, ada, text_document("dunes"), callback_url=receiver.url).json()
    wait_for_job(client, ada, sent["job_id"])
    deadline = time.monotonic() + WAIT_S
    while not attempts(client, sent["document_id"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    settle()
    assert receiver.received == []
    assert attempts(client, sent["document_id"]) == [(1, None, False)]
