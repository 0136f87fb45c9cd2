"""Both vendors' failures read the same way: openai (httpx2), llama_cloud (httpx), raw httpx and httpx2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import httpx2
import llama_cloud
import openai
import pytest

from ingest.errors import VendorError
from router.vendor_errors import (
    ErrorClass,
    MalformedResponse,
    classify,
    classify_status,
    describe,
    parse_retry_after,
    redact,
    retry_after_seconds,
    vendor_failure,
)

URL = "https://api.example.test/v1/embeddings"


def _openai_error(
    status: int, error: dict | None = None, headers: dict | None = None
) -> openai.APIStatusError:
    """The exception the openai SDK raises for this answer, built by the SDK's own client."""
    body = {"error": error or {"message": "boom", "type": "server_error", "param": None, "code": None}}
    response = httpx2.Response(status, json=body, headers=headers, request=httpx2.Request("POST", URL))
    client = openai.OpenAI(api_key="sk-test", base_url="http://localhost")
    return client._make_status_error_from_response(response)


def _llama_error(status: int, body: object, headers: dict | None = None) -> llama_cloud.APIStatusError:
    response = httpx.Response(status, json=body, headers=headers, request=httpx.Request("POST", URL))
    client = llama_cloud.LlamaCloud(api_key="llx-test", base_url="http://localhost")
    return client._make_status_error_from_response(response)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (
            429,
            {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"},
            ErrorClass.RATE_LIMITED,
        ),
        (
            429,
            {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            },
            ErrorClass.FATAL_QUOTA,
        ),
        (
            429,
            {
                "message": "Request too large for text-embedding-3-small on tokens per min (TPM)",
                "type": "tokens",
                "code": "rate_limit_exceeded",
            },
            ErrorClass.BAD_INPUT_TOO_LARGE,
        ),
        (
            401,
            {
                "message": "Incorrect API key provided: sk-ab***yz.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            },
            ErrorClass.FATAL_AUTH,
        ),
        (
            403,
            {"message": "Project does not have access", "type": "invalid_request_error"},
            ErrorClass.FATAL_AUTH,
        ),
        (402, {"message": "Payment required"}, ErrorClass.FATAL_QUOTA),
        (
            400,
            {
                "message": "Requested 453357 tokens, max 300000 tokens per request",
                "type": "max_tokens_per_request",
                "code": "max_tokens_per_request",
            },
            ErrorClass.BAD_INPUT_TOO_LARGE,
        ),
        (
            400,
            {
                "message": "This model's maximum context length is 8192 tokens, however you requested 9000 tokens",
                "type": "invalid_request_error",
                "code": None,
            },
            ErrorClass.BAD_INPUT_TOO_LARGE,
        ),
        (400, {"message": "'$.input' is invalid.", "type": "invalid_request_error"}, ErrorClass.BAD_INPUT),
        (404, {"message": "The model `x` does not exist", "code": "model_not_found"}, ErrorClass.BAD_INPUT),
        (408, None, ErrorClass.TRANSIENT),
        (500, None, ErrorClass.TRANSIENT),
        (503, {"message": "The engine is currently overloaded"}, ErrorClass.TRANSIENT),
    ],
)
def test_openai_status_errors(status: int, error: dict | None, expected: ErrorClass) -> None:
    assert classify(_openai_error(status, error)) is expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, {"detail": "Too many requests"}, ErrorClass.RATE_LIMITED),
        (401, {"detail": "Invalid API key"}, ErrorClass.FATAL_AUTH),
        (402, {"detail": "Out of credits"}, ErrorClass.FATAL_QUOTA),
        (413, {"detail": "File too large"}, ErrorClass.BAD_INPUT_TOO_LARGE),
        (422, {"detail": [{"loc": ["body", "file"], "msg": "field required"}]}, ErrorClass.BAD_INPUT),
        (502, {"detail": "Bad gateway"}, ErrorClass.TRANSIENT),
    ],
)
def test_llama_cloud_status_errors(status: int, body: object, expected: ErrorClass) -> None:
    assert classify(_llama_error(status, body)) is expected


def test_raw_http_errors_classify_like_sdk_errors() -> None:
    request = httpx.Request("GET", URL)
    for status, expected in (
        (429, ErrorClass.RATE_LIMITED),
        (401, ErrorClass.FATAL_AUTH),
        (500, ErrorClass.TRANSIENT),
    ):
        response = httpx.Response(status, json={"detail": "x"}, request=request)
        err = httpx.HTTPStatusError("x", request=request, response=response)
        assert classify(err) is expected
    response2 = httpx2.Response(403, request=httpx2.Request("GET", URL))
    assert (
        classify(httpx2.HTTPStatusError("x", request=response2.request, response=response2))
        is ErrorClass.FATAL_AUTH
    )


@pytest.mark.parametrize(
    "exc",
    [
        openai.APITimeoutError(request=httpx2.Request("POST", URL)),
        openai.APIConnectionError(request=httpx2.Request("POST", URL)),
        llama_cloud.APITimeoutError(request=httpx.Request("POST", URL)),
        llama_cloud.APIConnectionError(request=httpx.Request("POST", URL)),
        httpx.ConnectTimeout("slow"),
        httpx.RemoteProtocolError("peer closed"),
        httpx2.ReadTimeout("slow"),
        httpx2.ConnectError("refused"),
        TimeoutError(),
        ConnectionResetError(),
        json.JSONDecodeError("Expecting value", '{"object": "li', 14),
        MalformedResponse("2 vectors for 3 inputs"),
    ],
)
def test_transport_and_parsing_failures_are_transient(exc: BaseException) -> None:
    assert classify(exc) is ErrorClass.TRANSIENT


def test_our_own_bugs_are_unknown() -> None:
    assert classify(KeyError("x")) is ErrorClass.UNKNOWN
    assert classify(VendorError("already decided")) is ErrorClass.UNKNOWN


def test_classify_status_is_total() -> None:
    for status in range(100, 600):
        assert isinstance(classify_status(status), ErrorClass)


def test_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    # The SDKs read retry-after-ms first: so do we.
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=now.timestamp()) == pytest.approx(30)
    assert (
        parse_retry_after(
            {"Retry-After": format_datetime(now - timedelta(seconds=5), usegmt=True)}, now=now.timestamp()
        )
        == 0
    )
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_retry_after_from_exceptions_of_both_sdks() -> None:
    assert retry_after_seconds(_openai_error(429, headers={"retry-after": "2"})) == 2
    assert retry_after_seconds(_llama_error(429, {"detail": "slow down"}, headers={"Retry-After": "4"})) == 4
    assert retry_after_seconds(openai.APITimeoutError(request=httpx2.Request("POST", URL))) is None


def test_messages_never_carry_keys() -> None:
    key = "sk-proj-SECRETSECRETSECRET1234"
    err = _openai_error(
        401, {"message": f"Incorrect API key provided: {key[:8]}***1234.", "code": "invalid_api_key"}
    )
    failure = vendor_failure("openai", err, secrets=(key,))
    assert isinstance(failure, VendorError)
    assert "sk-" not in str(failure) and "***" not in str(failure)
    assert "401" in str(failure)
    assert redact(f"key {key} and sk-ab***yz", secrets=(key,)) == "key [redacted] and [redacted]"
    bad = _openai_error(400, {"message": f"weird input near {key}", "type": "invalid_request_error"})
    assert key not in describe(bad, secrets=(key,))


def test_vendor_failure_wording() -> None:
    quota = vendor_failure("openai", _openai_error(429, {"message": "quota", "code": "insufficient_quota"}))
    assert "quota" in str(quota) and "\n" not in str(quota)
    rejected = vendor_failure("openai", _openai_error(400, {"message": "'$.input' is invalid.", "type": "x"}))
    assert "'$.input' is invalid." in str(rejected)
