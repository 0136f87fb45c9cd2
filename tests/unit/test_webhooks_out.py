"""Standard Webhooks signing and the verify helper receivers copy."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from workers.callback_signing import (
    CallbackData,
    CallbackEvent,
    CallbackVerificationError,
    delivery_headers,
    new_message_id,
    secret_key,
    sign,
    verify,
)

# The reference implementation's test vector (standard-webhooks, libraries/python/tests: test_sign_function).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NOW = 1_700_000_000


def test_the_spec_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP) == {"test": 2432232314}


def test_the_prefix_is_optional_and_padding_may_be_missing() -> None:
    assert secret_key(SPEC_SECRET) == secret_key(SPEC_SECRET.removeprefix("whsec_"))
    unpadded = "whsec_" + base64.b64encode(bytes(range(25))).decode().rstrip("=")
    assert secret_key(unpadded) == bytes(range(25))


@pytest.mark.parametrize("bad", ["whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode(), ""])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        secret_key(bad)


def signed(body: bytes, *, at: int = NOW, message_id: str = "msg_1") -> dict[str, str]:
    return delivery_headers(SECRET, message_id, body, now=at)


def test_a_signed_delivery_verifies_with_headers_in_any_case() -> None:
    body = b'{"type":"document.completed"}'
    headers = {name.title(): value for name, value in signed(body).items()}
    assert verify(SECRET, headers, body, now=NOW) == {"type": "document.completed"}


def test_one_valid_v1_signature_among_several_is_enough() -> None:
    body = b"{}"
    headers = signed(body)
    other = sign("whsec_" + base64.b64encode(b"x" * 32).decode(), "msg_1", NOW, body)
    headers["webhook-signature"] = f"v1a,c2lnbmF0dXJl {other} {headers['webhook-signature']}"
    assert verify(SECRET, headers, body, now=NOW) == {}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),  # the body changed by one byte
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),  # another id
        lambda h, b: ({**h, "webhook-timestamp": str(NOW + 1)}, b),  # another timestamp
        lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b),
        lambda h, b: ({**h, "webhook-timestamp": "soon"}, b),
        lambda h, b: ({**h, "webhook-id": "msg.1"}, b),
    ],
)
def test_anything_altered_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    body = b'{"a":1}'
    headers, body = tamper(signed(body), body)
    with pytest.raises(CallbackVerificationError):
        verify(SECRET, headers, body, now=NOW)


def test_a_wrong_secret_is_refused() -> None:
    body = b"{}"
    with pytest.raises(CallbackVerificationError):
        verify("whsec_" + base64.b64encode(b"y" * 32).decode(), signed(body), body, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_timestamps_more_than_five_minutes_away_are_refused(skew: int) -> None:
    body = b"{}"
    with pytest.raises(CallbackVerificationError, match="too far"):
        verify(SECRET, signed(body, at=NOW + skew), body, now=NOW)
    assert verify(SECRET, signed(body, at=NOW + skew - (1 if skew > 0 else -1)), body, now=NOW) == {}


def test_the_event_body_is_compact_json_of_the_documented_shape() -> None:
    document_id, job_id = uuid4(), uuid4()
    event = CallbackEvent(
        type="document.failed",
        timestamp=datetime(2025, 5, 1, 12, 0, tzinfo=UTC),
        data=CallbackData(
            document_id=document_id,
            job_id=job_id,
            status="failed",
            error="corrupt",
            chunks=0,
            cost_usd="0.000000",
        ),
    )
    body = event.body()
    assert b" " not in body.replace(b'"corrupt"', b"")
    headers = delivery_headers(SECRET, new_message_id(), body, now=NOW)
    assert verify(SECRET, headers, body, now=NOW) == {
        "type": "document.failed",
        "timestamp": "2025-05-01T12:00:00Z",
        "data": {
            "document_id": str(document_id),
            "job_id": str(job_id),
            "status": "failed",
            "error": "corrupt",
            "chunks": 0,
            "cost_usd": "0.000000",
        },
    }
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"].startswith("msg_") and "." not in headers["webhook-id"]
