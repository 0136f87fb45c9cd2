"""OpenAIEmbedder against respx: the exact request the SDK sends, and what we make of each answer.

The SDK sends through httpx2, which respx does not patch. So the SDK gets an `httpx2.Client` whose mock
transport hands every request to a respx router (see the module docstring of router.openai_real): the
SDK's native code path runs unchanged, and respx matches, answers and records.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import httpx2
import numpy as np
import pytest
import respx
from dramatiq.rate_limits.backends import StubBackend

from ingest.config import Settings
from ingest.errors import VendorError
from ingest.tokens import count_tokens
from router.backoff import Cooldown, LocalCooldownBackend, RetriesExhausted, RetryPolicy
from router.openai_real import OpenAIEmbedder
from router.vendor_limits import VendorRateLimits
from tests.clocks import FakeClock

BASE = "https://api.openai.test/v1"
KEY = "sk-test-SECRETSECRETSECRET-0042"
DIMS = 4


def respx_http_client(router: respx.Router) -> httpx2.Client:
    """An httpx2 client whose every request is answered by the respx router."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        legacy = httpx.Request(
            request.method, str(request.url), headers=list(request.headers.raw), content=request.read()
        )
        try:
            answer = router.handler(legacy)
        except httpx.TimeoutException as err:
            raise httpx2.ReadTimeout(str(err), request=request) from err
        return httpx2.Response(
            answer.status_code, headers=list(answer.headers.raw), content=answer.read(), request=request
        )

    return httpx2.Client(transport=httpx2.MockTransport(handle))


def unit_rows(n: int, dims: int = DIMS, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dims)).astype(np.float32)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def b64(row: np.ndarray) -> str:
    return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode()


def ok(rows: np.ndarray, prompt_tokens: int = 42, model: str = "text-embedding-3-small") -> httpx.Response:
    data = [{"object": "embedding", "index": i, "embedding": b64(r)} for i, r in enumerate(rows)]
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return httpx.Response(200, json=body, headers={"x-request-id": "req_ok"})


def err(
    status: int, message: str, code: str | None = None, type_: str = "invalid_request_error", **headers: str
) -> httpx.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return httpx.Response(status, json=body, headers={"x-request-id": "req_err", **headers})


def inputs(request: httpx.Request) -> list[str]:
    return json.loads(request.content)["input"]


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=BASE, assert_all_mocked=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=0.0)


@pytest.fixture
def make(router: respx.Router, clock: FakeClock) -> Callable[..., OpenAIEmbedder]:
    def build(model: str = "text-embedding-3-small", **policy: float) -> OpenAIEmbedder:
        settings = Settings(
            _env_file=None,
            openai_api_key=KEY,
            openai_base_url=BASE,
            openai_embedding_model=model,
            openai_embedding_dimensions=DIMS,
        )
        return OpenAIEmbedder(
            settings,
            http_client=respx_http_client(router),
            policy=RetryPolicy(
                **{"max_attempts": 4, "initial_backoff_s": 0.01, "max_backoff_s": 0.02, **policy}
            ),
            cooldown=Cooldown(LocalCooldownBackend(clock)),
            rate_limits=VendorRateLimits(10_000, 10_000_000, StubBackend(), key="test", sleep=clock.sleep),
            sleep=clock.sleep,
        )

    return build


def test_request_shape_and_base64_decoding(router: respx.Router, make: Callable[..., OpenAIEmbedder]) -> None:
    rows = unit_rows(2)
    route = router.post("/embeddings").mock(return_value=ok(rows, prompt_tokens=42))
    result = make().embed(["hello world", "second text"])

    assert route.call_count == 1
    request = route.calls.last.request
    assert str(request.url) == f"{BASE}/embeddings"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "model": "text-embedding-3-small",
        "input": ["hello world", "second text"],
        "dimensions": DIMS,
        "encoding_format": "base64",
    }
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (2, DIMS)
    np.testing.assert_allclose(result.vectors, rows, atol=1e-6)
    # Billed tokens are what the service says, not our own count.
    assert result.prompt_tokens == 42 and result.requests == 1 and result.simulated is False


def test_dimensions_only_for_models_that_take_it(
    router: respx.Router, make: Callable[..., OpenAIEmbedder]
) -> None:
    route = router.post("/embeddings").mock(return_value=ok(unit_rows(1), model="text-embedding-ada-002"))
    make(model="text-embedding-ada-002").embed(["x"])
    body = json.loads(route.calls.last.request.content)
    assert "dimensions" not in body and body["model"] == "text-embedding-ada-002"


def test_429_waits_retry_after_then_succeeds(
    router: respx.Router, make: Callable[..., OpenAIEmbedder], clock: FakeClock
) -> None:
    route = router.post("/embeddings").mock(
        side_effect=[
            err(429, "Rate limit reached", "rate_limit_exceeded", "requests", **{"retry-after": "2"}),
            ok(unit_rows(1), 7),
        ]
    )
    result = make().embed(["x"])
    assert route.call_count == 2
    assert clock.slept == [2.0]
    assert result.requests == 1 and result.prompt_tokens == 7


def test_500_and_timeouts_back_off_then_succeed(
    router: respx.Router, make: Callable[..., OpenAIEmbedder], clock: FakeClock
) -> None:
    route = router.post("/embeddings").mock(
        side_effect=[
            err(500, "The server had an error", type_="server_error"),
            httpx.ReadTimeout("slow"),
            ok(unit_rows(1)),
        ]
    )
    result = make().embed(["x"])
    assert route.call_count == 3 and result.requests == 1
    assert len(clock.slept) == 2 and all(0 <= s <= 0.02 for s in clock.slept)


def test_persistent_5xx_gives_up_as_retryable(
    router: respx.Router, make: Callable[..., OpenAIEmbedder]
) -> None:
    route = router.post("/embeddings").mock(return_value=err(503, "overloaded", type_="server_error"))
    with pytest.raises(RetriesExhausted):
        make(max_attempts=3).embed(["x"])
    assert route.call_count == 3


def test_401_fails_at_once_without_the_key(router: respx.Router, make: Callable[..., OpenAIEmbedder]) -> None:
    route = router.post("/embeddings").mock(
        return_value=err(401, f"Incorrect API key provided: {KEY[:8]}***0042.", "invalid_api_key")
    )
    with pytest.raises(VendorError) as raised:
        make().embed(["x"])
    assert route.call_count == 1
    message = str(raised.value)
    assert "401" in message and KEY not in message and KEY[:8] not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_insufficient_quota_fails_at_once(router: respx.Router, make: Callable[..., OpenAIEmbedder]) -> None:
    route = router.post("/embeddings").mock(
        return_value=err(429, "You exceeded your current quota", "insufficient_quota", "insufficient_quota")
    )
    with pytest.raises(VendorError, match="quota"):
        make().embed(["x"])
    assert route.call_count == 1


def test_oversized_batch_is_split(router: respx.Router, make: Callable[..., OpenAIEmbedder]) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon", "zeta"]
    rows = unit_rows(4)

    def answer(request: httpx.Request) -> httpx.Response:
        sent = inputs(request)
        if len(sent) > 2:
            return err(
                400,
                "Requested 400000 tokens, max 300000 tokens per request",
                "max_tokens_per_request",
                "max_tokens_per_request",
            )
        return ok(rows[[texts.index(t) for t in sent]], prompt_tokens=10 * len(sent))

    route = router.post("/embeddings").mock(side_effect=answer)
    result = make().embed(texts)
    assert [inputs(call.request) for call in route.calls] == [texts, texts[:2], texts[2:]]
    np.testing.assert_allclose(result.vectors, rows, atol=1e-6)
    assert result.requests == 2 and result.prompt_tokens == 40
    assert result.extra["split_batches"] == [4]


def test_a_single_input_too_large_is_a_vendor_error(
    router: respx.Router, make: Callable[..., OpenAIEmbedder]
) -> None:
    router.post("/embeddings").mock(
        return_value=err(
            400, "This model's maximum context length is 8192 tokens, however you requested 9000 tokens"
        )
    )
    with pytest.raises(VendorError, match="maximum context length"):
        make().embed(["x"])


@pytest.mark.parametrize(
    "row",
    [
        np.array([np.nan, 0, 0, 1], dtype=np.float32),
        np.array([np.inf, 0, 0, 0], dtype=np.float32),
        np.zeros(DIMS, dtype=np.float32),
        np.array([0.5, 0, 0, 0], dtype=np.float32),
        np.ones(DIMS + 1, dtype=np.float32) / np.sqrt(DIMS + 1),
    ],
    ids=["nan", "inf", "zero", "short", "wrong-dimension"],
)
def test_bad_vectors_are_rejected(
    router: respx.Router, make: Callable[..., OpenAIEmbedder], row: np.ndarray
) -> None:
    route = router.post("/embeddings").mock(return_value=ok(row[None, :]))
    with pytest.raises(VendorError, match="input 0"):
        make().embed(["x"])
    assert route.call_count == 1  # a service that sends garbage once is not asked again at once


def test_tiny_norm_drift_is_renormalised(router: respx.Router, make: Callable[..., OpenAIEmbedder]) -> None:
    router.post("/embeddings").mock(return_value=ok(unit_rows(1) * 1.003))
    vectors = make().embed(["x"]).vectors
    assert abs(float(np.linalg.norm(vectors[0])) - 1) < 1e-6


def test_malformed_answers_are_retried(router: respx.Router, make: Callable[..., OpenAIEmbedder]) -> None:
    one_short = ok(unit_rows(1))  # one vector for two inputs
    truncated = httpx.Response(
        200, content=b'{"object": "list", "data": [', headers={"content-type": "application/json"}
    )
    route = router.post("/embeddings").mock(side_effect=[one_short, truncated, ok(unit_rows(2))])
    assert make().embed(["a", "b"]).requests == 1
    assert route.call_count == 3


def test_float_answers_are_accepted(router: respx.Router, make: Callable[..., OpenAIEmbedder]) -> None:
    rows = unit_rows(1)
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": rows[0].tolist()}],
        "model": "m",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    router.post("/embeddings").mock(return_value=httpx.Response(200, json=body))
    np.testing.assert_allclose(make().embed(["x"]).vectors, rows, atol=1e-6)


def test_inputs_over_the_limit_are_truncated(
    router: respx.Router, make: Callable[..., OpenAIEmbedder]
) -> None:
    long_text = "word " * 9000
    route = router.post("/embeddings").mock(return_value=ok(unit_rows(2)))
    result = make().embed(["short", long_text])
    sent = inputs(route.calls.last.request)
    assert sent[0] == "short" and long_text.startswith(sent[1])
    assert count_tokens([sent[1]])[0] <= 8192
    assert result.extra["truncated_inputs"] == [1]


def test_more_than_2048_inputs_take_two_requests(
    router: respx.Router, make: Callable[..., OpenAIEmbedder]
) -> None:
    route = router.post("/embeddings").mock(
        side_effect=lambda request: ok(unit_rows(len(inputs(request))), 5)
    )
    result = make().embed([f"t{i}" for i in range(2049)])
    assert [len(inputs(call.request)) for call in route.calls] == [2048, 1]
    assert result.requests == 2 and result.prompt_tokens == 10 and result.vectors.shape == (2049, DIMS)


def test_empty_input_list_calls_nothing(router: respx.Router, make: Callable[..., OpenAIEmbedder]) -> None:
    route = router.post("/embeddings")
    result = make().embed([])
    assert route.call_count == 0 and result.vectors.shape == (0, DIMS) and result.requests == 0


def test_an_empty_string_is_refused_before_any_call(
    router: respx.Router, make: Callable[..., OpenAIEmbedder]
) -> None:
    route = router.post("/embeddings")
    with pytest.raises(VendorError, match="input 1 is empty"):
        make().embed(["x", ""])
    assert route.call_count == 0
