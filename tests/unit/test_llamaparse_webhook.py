"""LC-Signature signing and verification of LlamaParse webhook deliveries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from router.llamaparse.webhook import (
    PARSE_SUCCESS,
    BadSignature,
    MalformedEvent,
    MissingSecret,
    MissingSignature,
    StaleEvent,
    event_body,
    sign,
    verify,
)

SECRET = "whsec-test-secret"
NOW = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)


def _delivery(at: datetime = NOW) -> bytes:
    return event_body("evt-1", PARSE_SUCCESS, "job-123", timestamp=at)


def test_valid_delivery_gives_the_event() -> None:
    body = _delivery()
    event = verify(body, sign(body, SECRET), SECRET, now=NOW + timedelta(seconds=3))
    assert (event.event_id, event.event_type, event.data.job_id) == ("evt-1", PARSE_SUCCESS, "job-123")
    assert event.timestamp == NOW


def test_signature_is_sha256_hex_of_the_raw_body() -> None:
    import hashlib
    import hmac

    body = _delivery()
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(body, SECRET) == f"sha256={expected}"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_unsigned_delivery_is_refused(header: str | None) -> None:
    with pytest.raises(MissingSignature):
        verify(_delivery(), header, SECRET, now=NOW)


def test_wrong_secret_is_refused() -> None:
    body = _delivery()
    with pytest.raises(BadSignature):
        verify(body, sign(body, "another-secret"), SECRET, now=NOW)


def test_body_altered_by_one_byte_is_refused() -> None:
    body = _delivery()
    header = sign(body, SECRET)
    altered = body.replace(b"job-123", b"job-124")
    assert len(altered) == len(body) and altered != body
    with pytest.raises(BadSignature):
        verify(altered, header, SECRET, now=NOW)


def test_header_without_the_scheme_is_refused() -> None:
    body = _delivery()
    bare = sign(body, SECRET).removeprefix("sha256=")
    with pytest.raises(BadSignature):
        verify(body, bare, SECRET, now=NOW)


def test_stale_timestamp_is_refused() -> None:
    body = _delivery(NOW - timedelta(seconds=301))
    with pytest.raises(StaleEvent):
        verify(body, sign(body, SECRET), SECRET, now=NOW)


def test_future_timestamp_is_refused() -> None:
    body = _delivery(NOW + timedelta(seconds=301))
    with pytest.raises(StaleEvent):
        verify(body, sign(body, SECRET), SECRET, now=NOW)


def test_timestamp_at_the_tolerance_is_accepted() -> None:
    body = _delivery(NOW - timedelta(seconds=300))
    assert verify(body, sign(body, SECRET), SECRET, now=NOW).data.job_id == "job-123"


def test_signed_garbage_is_malformed_not_accepted() -> None:
    body = b'{"event_id": "x"}'
    with pytest.raises(MalformedEvent):
        verify(body, sign(body, SECRET), SECRET, now=NOW)


def test_string_output_format_is_read_too() -> None:
    # The vendor's default webhook_output_format "string" sends the event as a JSON-encoded string.
    body = json.dumps(_delivery().decode()).encode()
    assert verify(body, sign(body, SECRET), SECRET, now=NOW).event_id == "evt-1"


def test_no_secret_configured_accepts_nothing() -> None:
    body = _delivery()
    with pytest.raises(MissingSecret):
        verify(body, sign(body, SECRET), "", now=NOW)
