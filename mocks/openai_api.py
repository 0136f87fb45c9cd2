"""A stand-in for OpenAI's `POST /v1/embeddings`, close enough that the official SDK, unmodified, talks to it.

What it reproduces: the request body (`input` as a string, strings, token ids or lists of token ids;
`model`, `dimensions`, `encoding_format`, `user`), the response (`float` lists or base64 little-endian
float32), OpenAI's error envelope `{"error": {message, type, param, code}}` with its statuses and
messages (401 key, 400 over 2,048 inputs / 8,192 tokens per input / 300,000 tokens per request, 404
model, 429 rate limit and insufficient_quota), the `x-ratelimit-*` and `x-request-id` headers, and a
real per-minute request and token window behind them.

Vectors come from the lexical mock embedder (`router.embedder_mock.embed_texts`), so search works
through the stand-in; usage is counted with cl100k_base, exactly as the real service bills.
Faults (mocks/faults.py) come from `MOCKS_*` variables or the `X-Mock-Faults` request header.
Every successful call is recorded in `app.state.ledger`. The Files and Batches APIs for embedding
batches are `mocks.openai_batch_api`, their state `app.state.batches`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ingest.tokens import count_tokens, encoding
from mocks import openai_batch_api
from mocks.faults import FaultInjector, FaultKind, FaultPlan, apply
from mocks.rate_window import RequestTokenWindows, duration
from router.embedder_mock import embed_texts

MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000
_INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
)


# --- payloads ------------------------------------------------------------------------------------------


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict types: "12" must stay text and 12 a token id, as the API reads them.
    input: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    model: StrictStr
    dimensions: StrictInt | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: StrictStr | None = None


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error", **fields: str | None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(message=message, type=type_, param=fields.get("param"), code=fields.get("code"))
        self.headers: dict[str, str] = {}


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(
        ErrorEnvelope(error=err.body).model_dump(), status_code=err.status, headers=err.headers
    )


# --- the ledger -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    request_id: str
    model: str
    dimensions: int
    inputs: int
    prompt_tokens: int


class Ledger:
    """Every successful call (what the client was billed for) and the statuses of refused ones, for tests."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._errors: Counter[int] = Counter()
        self._lock = threading.Lock()

    def record(self, entry: LedgerEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def record_error(self, status: int) -> None:
        with self._lock:
            self._errors[status] += 1

    @property
    def errors(self) -> Counter[int]:
        """Refused requests by HTTP status (injected faults included)."""
        with self._lock:
            return Counter(self._errors)

    @property
    def entries(self) -> list[LedgerEntry]:
        with self._lock:
            return list(self._entries)

    @property
    def requests(self) -> int:
        return len(self.entries)

    @property
    def prompt_tokens(self) -> int:
        return sum(e.prompt_tokens for e in self.entries)

    @property
    def inputs(self) -> int:
        return sum(e.inputs for e in self.entries)


# --- the app -------------------------------------------------------------------------------------------


def _fault_error(kind: FaultKind) -> tuple[int, dict[str, object]]:
    errors = {
        FaultKind.RATE_LIMIT: (
            429,
            "Rate limit reached for requests (injected fault).",
            "requests",
            "rate_limit_exceeded",
        ),
        FaultKind.QUOTA: (
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        FaultKind.SERVER_ERROR: (
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        FaultKind.TIMEOUT: (504, "Gateway timeout.", "server_error", None),
    }
    status, message, type_, code = errors[kind]
    return status, ErrorEnvelope(error=ErrorBody(message=message, type=type_, code=code)).model_dump()


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * 8}{key[-4:]}" if len(key) > 12 else "*" * len(key)


def _check_key(request: Request, expected: str | None) -> None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using "
            "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if expected is not None and not secrets.compare_digest(key.strip(), expected):
        raise ApiError(
            401,
            f"Incorrect API key provided: {_mask(key.strip())}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


def _parse(raw: bytes) -> EmbeddingRequest:
    try:
        payload = json.loads(raw)
    except ValueError:
        raise ApiError(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(payload, dict):
        raise ApiError(400, _INVALID_INPUT)
    try:
        return EmbeddingRequest.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "extra_forbidden":
            raise ApiError(400, f"Unrecognized request argument supplied: {field}") from None
        if field == "model" and first["type"] == "missing":
            raise ApiError(400, "you must provide a model parameter") from None
        if field in ("encoding_format", "dimensions", "user"):
            raise ApiError(400, f"Invalid value for '{field}'.", param=field) from None
        raise ApiError(400, _INVALID_INPUT) from None


def _texts_and_tokens(body: EmbeddingRequest) -> tuple[list[str], list[int]]:
    """Inputs as text (token ids decoded with cl100k_base) and their exact token counts."""
    raw = body.input
    if isinstance(raw, str):
        items: list[str] | list[list[int]] = [raw]
    elif raw and isinstance(raw[0], int):
        items = [raw]  # one input given as token ids
    else:
        items = raw  # type: ignore[assignment]
    if not items or any(len(item) == 0 for item in items):
        raise ApiError(400, _INVALID_INPUT)
    if len(items) > MAX_INPUTS:
        raise ApiError(400, _INVALID_INPUT)
    if isinstance(items[0], str):
        texts = list(items)
        return texts, count_tokens(texts)
    try:
        return [encoding().decode(ids) for ids in items], [len(ids) for ids in items]
    except (KeyError, ValueError):
        raise ApiError(400, _INVALID_INPUT) from None


def _check_sizes(tokens: list[int]) -> None:
    for n in tokens:
        if n > MAX_INPUT_TOKENS:
            raise ApiError(
                400,
                f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you requested {n} "
                f"tokens ({n} in your prompt; 0 for the completion). Please reduce your prompt; or completion length.",
            )
    total = sum(tokens)
    if total > MAX_REQUEST_TOKENS:
        raise ApiError(
            400,
            f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
            "max_tokens_per_request",
            code="max_tokens_per_request",
        )


def _dimensions(body: EmbeddingRequest) -> int:
    native = MODELS.get(body.model)
    if native is None:
        raise ApiError(
            404,
            f"The model `{body.model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    if body.dimensions is None:
        return native
    if not body.model.startswith("text-embedding-3"):
        raise ApiError(400, "This model does not support specifying dimensions.")
    if not 1 <= body.dimensions <= native:
        raise ApiError(
            400,
            f"Invalid value for 'dimensions' = {body.dimensions}. Must be between 1 and {native}.",
            param="dimensions",
        )
    return body.dimensions


def _encode(vectors: np.ndarray, fmt: str) -> list[list[float] | str]:
    if fmt == "base64":
        return [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in vectors]
    return vectors.astype(np.float64).tolist()


def _admit(windows: RequestTokenWindows, model: str, tokens: int) -> None:
    """Count the request in the per-minute windows, or refuse it as OpenAI does (429 with the wait)."""
    refusal = windows.admit(tokens)
    if refusal is None:
        return
    unit, limit = refusal.unit, refusal.limit
    if refusal.too_large:
        message = (
            f"Request too large for {model} on {unit} per min: Limit {limit}, Requested {refusal.requested}."
        )
    else:
        message = (
            f"Rate limit reached for {model} on {unit} per min: Limit {limit}, Used {refusal.used}, "
            f"Requested {refusal.requested}. Please try again in {duration(refusal.wait_s)}."
        )
    err = ApiError(429, message, unit, code="rate_limit_exceeded")
    err.headers = {
        **windows.headers(),
        "retry-after": str(math.ceil(refusal.wait_s)),
        "retry-after-ms": str(math.ceil(refusal.wait_s * 1000)),
    }
    raise err


def answer_embedding(payload: dict[str, object]) -> tuple[int, dict[str, object], int]:
    """One `/v1/embeddings` body answered as the endpoint would, without rate windows: (status, response
    body, billed tokens). The Batch API runs its lines through this."""
    try:
        body = _parse(json.dumps(payload).encode())
        dimensions = _dimensions(body)
        texts, counts = _texts_and_tokens(body)
        _check_sizes(counts)
    except ApiError as err:
        return err.status, ErrorEnvelope(error=err.body).model_dump(), 0
    vectors = embed_texts(texts, dimensions)
    answer = EmbeddingResponse(
        data=[
            EmbeddingItem(index=i, embedding=e) for i, e in enumerate(_encode(vectors, body.encoding_format))
        ],
        model=body.model,
        usage=Usage(prompt_tokens=sum(counts), total_tokens=sum(counts)),
    )
    return 200, answer.model_dump(), sum(counts)


def create_app(
    plan: FaultPlan | None = None,
    *,
    api_key: str | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> FastAPI:
    """The stand-in. Unset arguments come from MOCKS_* variables (MOCKS_OPENAI_KEY: the only key
    accepted; unset, any non-empty key is), then OpenAI's tier 1 limits for embeddings."""
    app = FastAPI(title="OpenAI embeddings stand-in", docs_url=None, redoc_url=None)
    injector = FaultInjector(plan or FaultPlan.from_env())
    ledger = Ledger()
    expected_key = api_key if api_key is not None else os.environ.get("MOCKS_OPENAI_KEY") or None
    windows = RequestTokenWindows(
        requests_per_minute or int(os.environ.get("MOCKS_OPENAI_RPM", "3000")),
        tokens_per_minute or int(os.environ.get("MOCKS_OPENAI_TPM", "1000000")),
    )
    app.state.injector = injector
    app.state.ledger = ledger
    app.state.batches = openai_batch_api.standin_from_env()

    def refused_key(request: Request) -> JSONResponse | None:
        try:
            _check_key(request, expected_key)
        except ApiError as err:
            return _error_response(err)
        return None

    openai_batch_api.install(app, app.state.batches, answer_embedding, refused_key)

    @app.exception_handler(StarletteHTTPException)
    async def not_found(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"Invalid URL ({request.method} {request.url.path})"
        return _error_response(ApiError(exc.status_code, message))

    @app.post("/v1/embeddings", response_model=EmbeddingResponse)
    async def embeddings(request: Request) -> Response:
        request_id = f"req_{secrets.token_hex(16)}"
        started = time.perf_counter()
        try:
            _check_key(request, expected_key)
            try:
                fault_plan = injector.plan.merged_with_headers(request.headers)
            except ValueError as err:
                raise ApiError(400, f"Bad X-Mock-Faults header: {err}") from None
            fault_response = await apply(injector.decide("POST /v1/embeddings", fault_plan), _fault_error)
            if fault_response is not None:
                fault_response.headers["x-request-id"] = request_id
                ledger.record_error(fault_response.status_code)
                return fault_response
            body = _parse(await request.body())
            dimensions = _dimensions(body)
            texts, counts = _texts_and_tokens(body)
            _check_sizes(counts)
            _admit(windows, body.model, sum(counts))
        except ApiError as err:
            err.headers["x-request-id"] = request_id
            ledger.record_error(err.status)
            return _error_response(err)
        vectors = embed_texts(texts, dimensions)
        payload = EmbeddingResponse(
            data=[
                EmbeddingItem(index=i, embedding=e)
                for i, e in enumerate(_encode(vectors, body.encoding_format))
            ],
            model=body.model,
            usage=Usage(prompt_tokens=sum(counts), total_tokens=sum(counts)),
        )
        ledger.record(LedgerEntry(request_id, body.model, dimensions, len(texts), sum(counts)))
        headers = {
            **windows.headers(),
            "x-request-id": request_id,
            "openai-model": body.model,
            "openai-processing-ms": str(round((time.perf_counter() - started) * 1000)),
        }
        return JSONResponse(payload.model_dump(), headers=headers)

    return app
