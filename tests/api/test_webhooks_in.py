"""`POST /v1/webhooks/llamaparse`: only correctly signed, fresh, new events wake the waiting parser, and
nothing else changes anything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from router.llamaparse.webhook import event_body, sign
from tests.api.conftest import error_of, runtime_of

SECRET = "lp-whsec-0f7c1e9a"
PATH = "/v1/webhooks/llamaparse"


@pytest.fixture
def client(start_client: Callable[..., TestClient]) -> TestClient:
    return start_client(LLAMAPARSE_WEBHOOK_SECRET=SECRET)


@pytest.fixture
def notified(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The vendor job ids the endpoint woke the parser for."""
    calls: list[str] = []

    class Recorder:
        def notify(self, vendor_job_id: str) -> None:
            calls.append(vendor_job_id)

    monkeypatch.setattr(runtime_of(client).router, "llamaparse_signal", lambda: Recorder())
    return calls


def event(event_id: str = "evt_1", job_id: str = "pjb-1", *, age: timedelta = timedelta(0)) -> bytes:
    return event_body(event_id, "parse.success", job_id, timestamp=datetime.now(UTC) - age)


def deliver(client: TestClient, body: bytes, signature: str | None = "sign") -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        signature = sign(body, SECRET)
    if signature is not None:
        headers["LC-Signature"] = signature
    return client.post(PATH, content=body, headers=headers)


def recorded(client: TestClient) -> list[str]:
    with runtime_of(client).pool.connection() as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM webhook_events ORDER BY event_id")]


def test_a_signed_event_wakes_the_parser_once_without_an_api_key(
    client: TestClient, notified: list[str]
) -> None:
    response = deliver(client, event(job_id="pjb-42"))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    assert notified == ["pjb-42"]
    assert recorded(client) == ["evt_1"]


def altered(body: bytes) -> bytes:
    """The body with one byte changed (a digit of the job id)."""
    index = body.index(b"pjb-1") + 4
    return body[:index] + b"7" + body[index + 1 :]


REFUSED: dict[str, Callable[[], tuple[bytes, str | None]]] = {
    "unsigned": lambda: (event(), None),
    "empty signature": lambda: (event(), ""),
    "wrong secret": lambda: (body := event(), sign(body, "another-secret")),
    "body altered by one byte": lambda: (altered(body := event()), sign(body, SECRET)),
    "not sha256": lambda: (body := event(), sign(body, SECRET).replace("sha256=", "sha1=")),
    "stale timestamp": lambda: (body := event(age=timedelta(minutes=5, seconds=5)), sign(body, SECRET)),
    "future timestamp": lambda: (body := event(age=-timedelta(minutes=5, seconds=5)), sign(body, SECRET)),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_refused_deliveries_are_401_and_change_nothing(
    client: TestClient, notified: list[str], case: str
) -> None:
    body, signature = REFUSED[case]()
    response = deliver(client, body, signature)
    assert response.status_code == 401, response.text
    assert error_of(response)["code"] == "unauthorized"
    assert notified == []
    assert recorded(client) == []


def test_a_replayed_event_id_is_200_and_changes_nothing(client: TestClient, notified: list[str]) -> None:
    body = event("evt_7", "pjb-1")
    assert deliver(client, body).json() == {"received": True, "duplicate": False}
    assert deliver(client, body).json() == {"received": True, "duplicate": True}
    # The same id, signed afresh for another job, is still the event already handled.
    replay = deliver(client, event("evt_7", "pjb-2"))
    assert (replay.status_code, replay.json()["duplicate"]) == (200, True)
    assert notified == ["pjb-1"]
    assert recorded(client) == ["evt_7"]


def test_distinct_events_of_one_job_each_wake_it(client: TestClient, notified: list[str]) -> None:
    deliver(client, event("evt_a", "pjb-1"))
    deliver(client, event("evt_b", "pjb-1"))
    assert notified == ["pjb-1", "pjb-1"]


def test_without_a_configured_secret_everything_is_refused(start_client: Callable[..., TestClient]) -> None:
    client = start_client()
    response = deliver(client, event())
    assert response.status_code == 401
    assert "secret" in error_of(response)["message"]
    assert recorded(client) == []


def test_a_signed_body_that_is_not_an_event_is_400(client: TestClient, notified: list[str]) -> None:
    body = b'{"event_id": "evt_1"}'
    response = deliver(client, body)
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"
    assert (notified, recorded(client)) == ([], [])


def test_an_oversized_body_is_413_unread(client: TestClient, notified: list[str]) -> None:
    body = b'{"pad": "' + b"x" * 100_000 + b'"}'
    response = deliver(client, body)
    assert response.status_code == 413
    assert (notified, recorded(client)) == ([], [])


def test_the_real_signal_wakes_a_waiting_worker(client: TestClient) -> None:
    signal = runtime_of(client).router.llamaparse_signal()
    signal.wait("warm-up", 5)  # the first wait puts the listener in place
    assert deliver(client, event("evt_9", "pjb-9")).status_code == 200
    assert signal.wait("pjb-9", 10) is True
