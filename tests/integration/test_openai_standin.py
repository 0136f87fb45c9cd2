"""The real OpenAIEmbedder and the official SDK against the stand-in, over real loopback HTTP.

uvicorn serves the stand-in from a thread on a free port; nothing is patched between the SDK and it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx2
import numpy as np
import openai
import pytest
import uvicorn
from dramatiq.rate_limits.backends import StubBackend
from starlette.types import ASGIApp

from ingest.config import Settings
from ingest.errors import VendorError
from ingest.tokens import count_tokens, encoding
from mocks import openai_api, server
from mocks.faults import FaultPlan
from router.backoff import Cooldown, LocalCooldownBackend, RetryPolicy
from router.embedder_mock import embed_texts
from router.openai_real import OpenAIEmbedder
from router.vendor_limits import VendorRateLimits

DIMS = 64
MODEL = "text-embedding-3-small"


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # A short graceful shutdown: a request still hanging in a timeout fault must not hold the test.
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the stand-in did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(autouse=True)
def _no_mock_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MOCKS_"):
            monkeypatch.delenv(name)


def embedder(base_url: str, key: str = "sk-test", **policy: float) -> OpenAIEmbedder:
    settings = Settings(
        _env_file=None,
        openai_api_key=key,
        openai_base_url=f"{base_url}/v1",
        openai_embedding_model=MODEL,
        openai_embedding_dimensions=DIMS,
    )
    return OpenAIEmbedder(
        settings,
        policy=RetryPolicy(**{"initial_backoff_s": 0.01, "max_backoff_s": 0.05, "timeout_s": 5.0, **policy}),
        cooldown=Cooldown(LocalCooldownBackend()),
        rate_limits=VendorRateLimits(10_000, 10_000_000, StubBackend(), key="standin-test"),
    )


def texts_of(n: int, tag: str = "") -> list[str]:
    words = ["pipeline", "vector", "parser", "budget", "worker", "search", "chunk", "token"]
    return [f"{tag} document {i} about {words[i % 8]} and {words[(i * 3) % 8]}" for i in range(n)]


def test_embeddings_match_the_lexical_embedder_and_usage_is_exact() -> None:
    app = openai_api.create_app(FaultPlan())
    texts = texts_of(300)
    with serving(app) as url:
        result = embedder(url).embed(texts)
    np.testing.assert_allclose(result.vectors, embed_texts(texts, DIMS), atol=1e-6)
    assert result.prompt_tokens == sum(count_tokens(texts)) == app.state.ledger.prompt_tokens
    assert result.requests == app.state.ledger.requests == 1
    assert result.simulated is False


def test_every_batch_succeeds_through_30_percent_faults() -> None:
    # Timeouts are the rarest third only because each costs a whole client timeout of test time.
    plan = FaultPlan(
        rate_429=0.12, rate_500=0.12, rate_timeout=0.06, retry_after_s=0.01, timeout_s=1.5, seed=9
    )
    app = openai_api.create_app(plan)
    batches = [texts_of(7, tag=f"batch{b}") for b in range(15)]
    with serving(app) as url:
        # A client timeout far below the injected hang, far above a normal answer (a few ms).
        client = embedder(url, timeout_s=0.4, max_attempts=12)
        results = [client.embed(batch) for batch in batches]

    stats = app.state.injector.stats
    assert set(stats.by_kind) == {"rate_429", "rate_500", "rate_timeout"}  # every kind of fault happened
    ledger = app.state.ledger
    # Each successful call is counted once, on both sides: failures bill nothing, retries double nothing.
    assert sum(r.requests for r in results) == ledger.requests == len(batches) == stats.served
    assert sum(ledger.errors.values()) == stats.failed
    assert sum(r.prompt_tokens for r in results) == ledger.prompt_tokens
    for batch, result in zip(batches, results, strict=True):
        np.testing.assert_allclose(result.vectors, embed_texts(batch, DIMS), atol=1e-6)
        assert result.prompt_tokens == sum(count_tokens(batch))


def test_malformed_bodies_are_retried() -> None:
    app = openai_api.create_app(FaultPlan(rate_malformed=0.5, seed=3))
    with serving(app) as url:
        results = [embedder(url, max_attempts=10).embed(texts_of(3, tag=str(i))) for i in range(6)]
    assert app.state.injector.stats.by_kind["rate_malformed"] > 0
    assert sum(r.requests for r in results) == app.state.ledger.requests == 6


def test_a_wrong_key_and_an_empty_account_fail_at_once() -> None:
    app = openai_api.create_app(FaultPlan(), api_key="sk-the-right-key-1234")
    with serving(app) as url:
        with pytest.raises(VendorError, match="key was refused") as raised:
            embedder(url, key="sk-the-wrong-key-9876").embed(["x"])
        assert "9876" not in str(raised.value)
    assert app.state.ledger.requests == 0 and app.state.ledger.errors == {401: 1}  # asked once, never again

    app = openai_api.create_app(FaultPlan(rate_quota=1))
    with serving(app) as url, pytest.raises(VendorError, match="quota"):
        embedder(url).embed(["x"])
    assert app.state.ledger.errors == {429: 1}


# --- the stand-in seen by the unmodified SDK -----------------------------------------------------------


@pytest.fixture
def sdk() -> Iterator[Callable[..., openai.OpenAI]]:
    clients: list[openai.OpenAI] = []

    def make(url: str, key: str = "sk-test") -> openai.OpenAI:
        client = openai.OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_sdk_defaults_token_ids_and_float_format(sdk: Callable[..., openai.OpenAI]) -> None:
    ids = encoding().encode_ordinary("token ids decode to this text")
    with serving(openai_api.create_app(FaultPlan())) as url:
        client = sdk(url)
        # No encoding_format: the SDK asks for base64 and decodes it itself.
        default = client.embeddings.create(input="plain text", model=MODEL, dimensions=DIMS)
        as_ids = client.embeddings.create(input=[ids], model=MODEL, dimensions=DIMS, encoding_format="float")
        raw = client.embeddings.with_raw_response.create(input="x", model=MODEL)
    np.testing.assert_allclose(default.data[0].embedding, embed_texts(["plain text"], DIMS)[0], atol=1e-6)
    np.testing.assert_allclose(
        as_ids.data[0].embedding, embed_texts(["token ids decode to this text"], DIMS)[0], atol=1e-6
    )
    assert as_ids.usage.prompt_tokens == len(ids) and as_ids.object == "list"
    assert len(raw.parse().data[0].embedding) == 1536  # the model's native size without `dimensions`
    assert raw.headers["x-request-id"].startswith("req_")
    for name in (
        "limit-requests",
        "remaining-requests",
        "reset-requests",
        "limit-tokens",
        "remaining-tokens",
        "reset-tokens",
    ):
        assert f"x-ratelimit-{name}" in raw.headers


def test_sdk_sees_openai_errors(sdk: Callable[..., openai.OpenAI]) -> None:
    with serving(openai_api.create_app(FaultPlan())) as url:
        client = sdk(url)
        with pytest.raises(openai.BadRequestError) as too_many:
            client.embeddings.create(input=["x"] * 2049, model=MODEL)
        with pytest.raises(openai.BadRequestError, match="maximum context length is 8192") as too_long:
            client.embeddings.create(input="word " * 8200, model=MODEL)
        with pytest.raises(openai.BadRequestError, match="max 300000 tokens per request") as too_big:
            client.embeddings.create(input=["word " * 8000] * 40, model=MODEL)
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(input="x", model="no-such-model")
        with pytest.raises(openai.BadRequestError, match="dimensions"):
            client.embeddings.create(input="x", model="text-embedding-ada-002", dimensions=8)
        no_key = httpx2.post(f"{url}/v1/embeddings", json={"input": "x", "model": MODEL})
    assert no_key.status_code == 401
    assert set(no_key.json()["error"]) == {"message", "type", "param", "code"}
    assert too_many.value.status_code == 400 and too_many.value.type == "invalid_request_error"
    assert too_long.value.status_code == 400
    assert too_big.value.code == "max_tokens_per_request"


def test_the_rate_window_answers_429_with_its_headers(sdk: Callable[..., openai.OpenAI]) -> None:
    with serving(openai_api.create_app(FaultPlan(), requests_per_minute=2)) as url:
        client = sdk(url)
        client.embeddings.create(input="a", model=MODEL)
        client.embeddings.create(input="b", model=MODEL)
        with pytest.raises(openai.RateLimitError) as limited:
            client.embeddings.create(input="c", model=MODEL)
    headers = limited.value.response.headers
    assert limited.value.code == "rate_limit_exceeded"
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "2"
    assert int(headers["retry-after"]) >= 1


def test_fault_header_overrides_per_request(sdk: Callable[..., openai.OpenAI]) -> None:
    with serving(openai_api.create_app(FaultPlan())) as url:
        client = sdk(url)
        with pytest.raises(openai.RateLimitError) as quota:
            client.embeddings.create(input="x", model=MODEL, extra_headers={"X-Mock-Faults": "rate_quota=1"})
        with pytest.raises(openai.InternalServerError):
            client.embeddings.create(input="x", model=MODEL, extra_headers={"X-Mock-Faults": "rate_500=1"})
        assert client.embeddings.create(input="x", model=MODEL).data
    assert quota.value.code == "insufficient_quota"


def test_one_port_serves_the_vendor_apis() -> None:
    app = server.create_app(FaultPlan())
    with serving(app) as url:
        answer = httpx2.post(
            f"{url}/v1/embeddings", json={"input": "x", "model": MODEL}, headers={"Authorization": "Bearer k"}
        )
        unknown = httpx2.get(f"{url}/nowhere")
        # LlamaParse's paths reach its own app (which refuses a keyless upload), not the front's 404.
        llamaparse = httpx2.post(f"{url}/api/v1/beta/files") if app.state.llamaparse is not None else None
    assert answer.status_code == 200 and answer.json()["usage"]["prompt_tokens"] == 1
    assert unknown.status_code == 404
    assert llamaparse is None or llamaparse.status_code != 404
    assert app.state.openai.state.ledger.requests == 1
