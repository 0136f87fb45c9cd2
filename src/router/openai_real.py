"""OpenAI embeddings through the official `openai` SDK, batched to the API's limits, with our own retries.

Limits of `POST /v1/embeddings` (SDK docstring of `embeddings.create`): at most 2,048 inputs per
request, 8,192 tokens per input, 300,000 tokens per request. Texts are counted with cl100k_base
(`ingest.tokens`, exact for the text-embedding-3 models) and cut into the fewest consecutive requests
those limits allow (`plan_batches`). An input over 8,192 tokens is truncated with a warning: the
chunker keeps chunks far below that, so this is a guard, not a path.

The SDK's retries are off (`max_retries=0`): `router.backoff.VendorRetry` retries instead, so a 429
extends a cooldown every worker honours. Requests also pass the client-side requests/tokens per
minute limits (`router.vendor_limits`). A 400 that says the request is too big splits the batch in half.

HTTP client and tests. SDK 3.x sends through httpx2, its own fork of httpx; respx patches only legacy
httpx, so it cannot see the SDK's default client. The SDK's migration note (httpx2.md in openai-python)
offers two ways: inject a legacy `httpx.Client` (a "temporary escape hatch" that also swaps the
exception and response families), or give an `httpx2.Client` a mock transport. We chose the second on
purpose: production always runs the SDK's native httpx2 stack, and `http_client` accepts any
`httpx2.Client`. The unit tests build `httpx2.Client(transport=httpx2.MockTransport(handler))` whose
handler hands each request to a respx router (respx matches and records; it patches nothing), so the
exact bytes the SDK sends are pinned by respx patterns while the code under test is unchanged. The
integration tests use the default client against the stand-in over real loopback HTTP.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx2
import numpy as np
import openai
import structlog

from ingest.config import Settings
from ingest.errors import ServiceUnavailable, VendorError
from ingest.tokens import count_tokens, truncate
from router import unsettled
from router.backoff import Cooldown, RetryPolicy, VendorRetry
from router.protocols import EmbedResult
from router.runs import TooLarge, greedy_runs
from router.unsettled import MaybeBilled
from router.vendor_errors import ErrorClass, MalformedResponse, classify, describe, vendor_failure
from router.vendor_limits import VendorRateLimits, rate_limit_backend

log = structlog.get_logger(__name__)

SERVICE = "openai"
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_INPUT = 8192
MAX_TOKENS_PER_REQUEST = 300_000
# The -3 models return unit vectors; float32 rounding drifts far less than this.
NORM_TOLERANCE = 1e-2
_FATAL = frozenset(
    {ErrorClass.FATAL_AUTH, ErrorClass.FATAL_QUOTA, ErrorClass.BAD_INPUT, ErrorClass.BAD_INPUT_TOO_LARGE}
)


def supports_dimensions(model: str) -> bool:
    """Only text-embedding-3 and later take `dimensions` (SDK docstring); ada-002 rejects it."""
    return model.startswith("text-embedding-3")


def plan_batches(
    token_counts: Sequence[int],
    max_inputs: int = MAX_INPUTS_PER_REQUEST,
    max_tokens_per_request: int = MAX_TOKENS_PER_REQUEST,
) -> list[range]:
    """Consecutive batches within both limits, as few as possible (`router.runs.greedy_runs`)."""
    if max_inputs < 1 or max_tokens_per_request < 1:
        raise ValueError("limits must be positive")
    try:
        return greedy_runs(token_counts, max_items=max_inputs, max_size=max_tokens_per_request)
    except TooLarge as big:
        raise ValueError(
            f"input {big.index} has {big.size} tokens, more than a whole request may carry"
        ) from None


def check_vectors(vectors: np.ndarray, tolerance: float = NORM_TOLERANCE) -> np.ndarray:
    """The rows renormalised; VendorError for a row that is not finite or not (nearly) unit length."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        raise VendorError(f"{SERVICE}: the embedding of input {bad[0]} has NaN or infinite values")
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    off = np.flatnonzero(np.abs(norms - 1.0) > tolerance)
    if off.size:
        i = off[0]
        raise VendorError(f"{SERVICE}: the embedding of input {i} has length {norms[i]:.4g}, expected 1")
    return (vectors / norms[:, None]).astype(np.float32)


def decode_embeddings(response: object, count: int, dimensions: int) -> np.ndarray:
    """The (count, dimensions) float32 rows of an embeddings response, in input order.

    A body that does not hold one decodable vector per input is MalformedResponse (worth a retry);
    a vector of the wrong size is VendorError (the service or the model setting is wrong).
    """
    data = getattr(response, "data", None)
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else "no"
        raise MalformedResponse(f"{got} embeddings for {count} inputs")
    out = np.empty((count, dimensions), dtype=np.float32)
    seen = np.zeros(count, dtype=bool)
    for item in data:
        index = getattr(item, "index", None)
        if not isinstance(index, int) or not 0 <= index < count or seen[index]:
            raise MalformedResponse(f"embedding index {index!r} is missing, repeated or out of range")
        vector = _decode_vector(getattr(item, "embedding", None))
        if vector.shape != (dimensions,):
            raise VendorError(
                f"{SERVICE}: the embedding of input {index} has {vector.size} dimensions, expected {dimensions}"
            )
        out[index] = vector
        seen[index] = True
    return out


def _decode_vector(raw: object) -> np.ndarray:
    if isinstance(raw, str):  # encoding_format="base64": little-endian float32
        try:
            return np.frombuffer(base64.b64decode(raw, validate=True), dtype="<f4")
        except (binascii.Error, ValueError) as err:
            raise MalformedResponse(f"undecodable base64 embedding: {err}") from err
    if isinstance(raw, list):  # a server that ignored encoding_format
        try:
            return np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise MalformedResponse("embedding is not a list of numbers") from err
    raise MalformedResponse(f"embedding of type {type(raw).__name__}")


@dataclass(slots=True)
class _Tally:
    prompt_tokens: int = 0
    requests: int = 0
    unconfirmed_tokens: int = 0  # requests that failed after they may have been billed
    unconfirmed_requests: int = 0
    unconfirmed_reason: str = ""
    splits: list[int] = field(default_factory=list)  # batch sizes split after a too-large answer


class OpenAIEmbedder:
    """The Embedder protocol over `POST /v1/embeddings`."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx2.Client | None = None,
        policy: RetryPolicy | None = None,
        cooldown: Cooldown | None = None,
        rate_limits: VendorRateLimits | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        if not key:
            raise ServiceUnavailable(f"{SERVICE}: OPENAI_API_KEY is not set")
        self.model = settings.openai_embedding_model
        self.dimensions = settings.openai_embedding_dimensions
        policy = policy or RetryPolicy.from_settings(settings)
        self._client = openai.OpenAI(
            api_key=key,
            base_url=settings.openai_base_url,
            max_retries=0,
            timeout=policy.timeout_s,
            http_client=http_client,
        )
        self._retry = VendorRetry(
            SERVICE, policy, cooldown or Cooldown.from_settings(settings), sleep=sleep, secrets=(key,)
        )
        self._limits = rate_limits or VendorRateLimits(
            settings.openai_requests_per_minute,
            settings.openai_tokens_per_minute,
            rate_limit_backend(settings),
            key=f"{settings.broker_namespace}:ratelimit:{SERVICE}:{self.model}",
            sleep=sleep,
        )
        self._secrets = (key,)

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        if not texts:
            return EmbedResult(np.empty((0, self.dimensions), np.float32), 0, requests=0, simulated=False)
        prepared, counts, truncated = self._prepare(texts)
        vectors = np.empty((len(prepared), self.dimensions), dtype=np.float32)
        tally = _Tally()
        try:
            for batch in plan_batches(counts):
                self._embed_range(prepared, counts, batch, vectors, tally)
        except BaseException as failed:
            if tally.requests:  # paid for, and lost with this failure: say so for the cost trail
                log.warning(
                    "embed_partial_failure", requests=tally.requests, prompt_tokens=tally.prompt_tokens
                )
            if tally.requests or tally.unconfirmed_requests:
                reason = tally.unconfirmed_reason or "an earlier batch of the call was billed"
                tokens = tally.prompt_tokens + tally.unconfirmed_tokens
                billed = MaybeBilled(tokens, tally.requests + tally.unconfirmed_requests, reason)
                unsettled.note(failed, billed)
            raise
        extra: dict[str, object] = {}
        if truncated:
            extra["truncated_inputs"] = truncated
        if tally.splits:
            extra["split_batches"] = tally.splits
        return EmbedResult(
            vectors,
            tally.prompt_tokens,
            requests=tally.requests,
            simulated=False,
            extra=extra,
            unconfirmed_tokens=tally.unconfirmed_tokens,
            unconfirmed_requests=tally.unconfirmed_requests,
        )

    def close(self) -> None:
        self._client.close()

    def _prepare(self, texts: Sequence[str]) -> tuple[list[str], list[int], list[int]]:
        """Texts ready to send, their token counts, and the indices truncated to the per-input limit."""
        prepared, counts = list(texts), count_tokens(texts)
        for i, text in enumerate(prepared):
            if not text:
                raise VendorError(f"{SERVICE}: input {i} is empty; the embeddings API refuses empty strings")
        truncated = [i for i, n in enumerate(counts) if n > MAX_TOKENS_PER_INPUT]
        for i in truncated:
            prepared[i] = truncate(prepared[i], MAX_TOKENS_PER_INPUT)
            log.warning("embedding_input_truncated", index=i, tokens=counts[i], kept=MAX_TOKENS_PER_INPUT)
            counts[i] = count_tokens([prepared[i]])[0]
        return prepared, counts, truncated

    def _embed_range(
        self, texts: list[str], counts: list[int], batch: range, out: np.ndarray, tally: _Tally
    ) -> None:
        try:
            vectors, prompt_tokens = self._retry.call(
                lambda: self._request(
                    texts[batch.start : batch.stop], sum(counts[batch.start : batch.stop]), tally
                )
            )
        except Exception as exc:
            kind = classify(exc)
            if kind is ErrorClass.BAD_INPUT_TOO_LARGE and len(batch) > 1:
                # Our count disagrees with the service's (a new tokenizer, a lower limit): halve and go on.
                log.warning("embedding_batch_split", inputs=len(batch))
                tally.splits.append(len(batch))
                middle = batch.start + len(batch) // 2
                self._embed_range(texts, counts, range(batch.start, middle), out, tally)
                self._embed_range(texts, counts, range(middle, batch.stop), out, tally)
                return
            if kind in _FATAL:
                raise vendor_failure(SERVICE, exc, self._secrets) from None  # its text may hold key fragments
            raise
        out[batch.start : batch.stop] = vectors
        tally.prompt_tokens += prompt_tokens
        tally.requests += 1

    def _request(self, texts: list[str], tokens: int, tally: _Tally) -> tuple[np.ndarray, int]:
        """One attempt: wait for the client-side limits, call, decode and check. An attempt that fails
        once its request may have been billed is counted in `tally` (at our count of its tokens)."""
        self._limits.acquire(tokens)
        dimensions = self.dimensions if supports_dimensions(self.model) else openai.omit
        try:
            response = self._client.embeddings.create(
                input=texts, model=self.model, encoding_format="base64", dimensions=dimensions
            )
            vectors = check_vectors(decode_embeddings(response, len(texts), self.dimensions))
            prompt_tokens = getattr(getattr(response, "usage", None), "prompt_tokens", None)
            if not isinstance(prompt_tokens, int):
                raise MalformedResponse("response has no usage.prompt_tokens")
        except BaseException as failed:
            if unsettled.may_have_been_billed(failed):
                tally.unconfirmed_tokens += tokens
                tally.unconfirmed_requests += 1
                why = describe(failed, self._secrets)
                tally.unconfirmed_reason = f"the request was sent and then failed: {why}"
                log.warning("embed_attempt_maybe_billed", tokens=tokens, reason=tally.unconfirmed_reason)
            raise
        return vectors, prompt_tokens
