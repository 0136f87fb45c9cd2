"""OpenAI's Files and Batches APIs, for `/v1/embeddings` batches, as the official SDK speaks them.

Routes (shapes from the SDK's `types/file_object.py`, `types/batch*.py`, `resources/files.py`,
`resources/batches.py`): `POST /v1/files` (multipart `file`, `purpose=batch`), `GET /v1/files/{id}`,
`GET /v1/files/{id}/content`, `POST /v1/batches` (`input_file_id`, `endpoint=/v1/embeddings`,
`completion_window=24h`, `metadata`), `GET /v1/batches/{id}`, `GET /v1/batches` (newest first, `after`,
`limit`), `POST /v1/batches/{id}/cancel`.

A batch is worked out when it is first looked at once its completion delay has passed since it was made
(`MOCKS_OPENAI_BATCH_DELAY_S`, or `state.delay_s`, read at each look): each input line is answered as `POST /v1/embeddings` would answer it (the same
validation, vectors and cl100k_base usage), into an output file (status 200 lines) and an error file.
The batch reports `request_counts` and `usage` (input tokens of the lines that completed: what it bills).

Faults, set on `state.faults` (each one applies to the next batches it counts down for):
- `fail_lines`: the first N lines of the next batch fail (a 500 line in the error file, not billed);
- `expire`: the next N batches expire: their first half of lines completes (billed), the rest go to the
  error file with `batch_expired`;
- `invalid`: the next N batches fail validation (status `failed`, `errors`, nothing run).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
EXPIRY_S = 24 * 3600


@dataclass(slots=True)
class BatchFaults:
    fail_lines: int = 0
    expire: int = 0
    invalid: int = 0


@dataclass(slots=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass(slots=True)
class StoredBatch:
    body: dict[str, Any]
    made_at: float  # time.monotonic() at creation: the batch runs once `delay_s` has passed since
    billed_tokens: int = 0

    @property
    def id(self) -> str:
        return str(self.body["id"])


@dataclass(slots=True)
class BatchStandin:
    """The stand-in's files, batches and faults; tests read and change it (`app.state.batches`)."""

    delay_s: float = 0.0
    faults: BatchFaults = field(default_factory=BatchFaults)
    files: dict[str, StoredFile] = field(default_factory=dict)
    batches: dict[str, StoredBatch] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def billed_tokens(self) -> int:
        """Input tokens of every line the stand-in's batches completed: what they bill."""
        with self.lock:
            return sum(b.billed_tokens for b in self.batches.values())

    def completed_lines(self) -> list[str]:
        """The custom_id of every line answered with a vector, over all batches."""
        with self.lock:
            out = [
                self.files[b.body["output_file_id"]]
                for b in self.batches.values()
                if b.body["output_file_id"]
            ]
        return [json.loads(line)["custom_id"] for f in out for line in f.content.splitlines()]


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


EmbedLine = Callable[[dict[str, Any]], tuple[int, dict[str, Any], int]]
KeyCheck = Callable[[Request], JSONResponse | None]


def install(app: FastAPI, state: BatchStandin, embed_line: EmbedLine, check_key: KeyCheck) -> None:
    """Add the Files and Batches routes to the OpenAI stand-in `app`. `embed_line(body)` answers one
    `/v1/embeddings` body as (status, response body, billed tokens); `check_key` refuses a bad key."""

    def now() -> int:
        return int(time.time())

    def new_file(filename: str, purpose: str, content: bytes) -> StoredFile:
        stored = StoredFile(f"file-{secrets.token_hex(12)}", filename, purpose, content, now())
        state.files[stored.id] = stored
        return stored

    def invalid(batch: StoredBatch, code: str, message: str, line: int | None = None) -> None:
        error = {"code": code, "line": line, "message": message, "param": None}
        batch.body.update(status="failed", failed_at=now(), errors={"object": "list", "data": [error]})

    def run(batch: StoredBatch) -> None:
        """Work the batch out: validate its file, answer its lines (faults applied)."""
        body = batch.body
        content = state.files[body["input_file_id"]].content
        if state.faults.invalid:
            state.faults.invalid -= 1
            invalid(batch, "invalid_request", "The input file failed validation (injected fault).")
            return
        lines: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(content.splitlines(), start=1):
            try:
                line = json.loads(raw)
                custom_id, url = line["custom_id"], line["url"]
                if line["method"] != "POST" or not isinstance(line["body"], dict):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                invalid(batch, "invalid_json_line", "This line is not parseable as valid JSON.", number)
                return
            if url != body["endpoint"]:
                invalid(
                    batch,
                    "mismatched_endpoint",
                    "The line's url does not match the batch's endpoint.",
                    number,
                )
                return
            if custom_id in seen:
                invalid(batch, "duplicate_custom_id", f"The custom_id {custom_id!r} is not unique.", number)
                return
            seen.add(custom_id)
            lines.append(line)
        if not lines or len(lines) > MAX_REQUESTS:
            invalid(
                batch, "too_many_requests" if lines else "empty_file", f"{len(lines)} requests in the file."
            )
            return
        failing, state.faults.fail_lines = min(state.faults.fail_lines, len(lines)), 0
        expiring = bool(state.faults.expire)
        if expiring:
            state.faults.expire -= 1
        answered = len(lines) // 2 if expiring else len(lines)
        output: list[str] = []
        errors: list[str] = []
        for i, line in enumerate(lines):
            request_id = f"req_{secrets.token_hex(12)}"
            record: dict[str, Any] = {
                "id": f"batch_req_{secrets.token_hex(12)}",
                "custom_id": line["custom_id"],
            }
            if i >= answered:
                record.update(
                    response=None,
                    error={
                        "code": "batch_expired",
                        "message": "This request could not be executed before the completion window expired.",
                    },
                )
                errors.append(json.dumps(record))
                continue
            if i < failing:
                status, answer, tokens = (
                    500,
                    {
                        "error": {
                            "message": "The server had an error (injected fault).",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    },
                    0,
                )
            else:
                status, answer, tokens = embed_line(line["body"])
            record.update(
                response={"status_code": status, "request_id": request_id, "body": answer}, error=None
            )
            (output if status == 200 else errors).append(json.dumps(record))
            batch.billed_tokens += tokens
        done = now()
        body.update(
            status="expired" if expiring else "completed",
            in_progress_at=body["created_at"],
            finalizing_at=done,
            request_counts={
                "total": len(lines),
                "completed": len(output),
                "failed": len(lines) - len(output),
            },
            usage={
                "input_tokens": batch.billed_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 0,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": batch.billed_tokens,
            },
        )
        body["expired_at" if expiring else "completed_at"] = done
        if output:
            body["output_file_id"] = new_file(
                "batch_output.jsonl", "batch_output", "\n".join(output).encode()
            ).id
        if errors:
            body["error_file_id"] = new_file(
                "batch_errors.jsonl", "batch_output", "\n".join(errors).encode()
            ).id

    def current(batch_id: str) -> StoredBatch | None:
        batch = state.batches.get(batch_id)
        if (
            batch is not None
            and batch.body["status"] == "validating"
            and time.monotonic() >= batch.made_at + state.delay_s
        ):
            run(batch)
        return batch

    @app.post("/v1/files")
    async def upload(request: Request) -> Response:
        if (refused := check_key(request)) is not None:
            return refused
        form = await request.form()
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose not in ("batch", "assistants", "fine-tune", "vision", "user_data"):
            return _error(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        if upload is None or isinstance(upload, str):
            return _error(400, "Missing file.", param="file")
        content = await upload.read()
        if len(content) > MAX_FILE_BYTES:
            return _error(400, f"File is too large: {len(content)} bytes, at most {MAX_FILE_BYTES}.")
        with state.lock:
            stored = new_file(upload.filename or "upload.jsonl", str(purpose), content)
        return JSONResponse(stored.object())

    @app.get("/v1/files/{file_id}")
    async def file_object(request: Request, file_id: str) -> Response:
        if (refused := check_key(request)) is not None:
            return refused
        stored = state.files.get(file_id)
        return JSONResponse(stored.object()) if stored else _error(404, f"No such File object: {file_id}")

    @app.get("/v1/files/{file_id}/content")
    async def file_content(request: Request, file_id: str) -> Response:
        if (refused := check_key(request)) is not None:
            return refused
        stored = state.files.get(file_id)
        if stored is None:
            return _error(404, f"No such File object: {file_id}")
        return Response(stored.content, media_type="application/octet-stream")

    @app.post("/v1/batches")
    async def create(request: Request) -> Response:
        if (refused := check_key(request)) is not None:
            return refused
        try:
            params = json.loads(await request.body())
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(params, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        if params.get("completion_window") != "24h":
            return _error(400, "Invalid value for 'completion_window'.", param="completion_window")
        if params.get("endpoint") not in ("/v1/embeddings", "/v1/chat/completions", "/v1/responses"):
            return _error(400, "Invalid value for 'endpoint'.", param="endpoint")
        with state.lock:
            stored = state.files.get(str(params.get("input_file_id")))
            if stored is None or stored.purpose != "batch":
                return _error(
                    400,
                    "Invalid 'input_file_id': must be a file uploaded with purpose 'batch'.",
                    param="input_file_id",
                )
            created = now()
            body: dict[str, Any] = {
                "id": f"batch_{secrets.token_hex(12)}",
                "object": "batch",
                "endpoint": params["endpoint"],
                "model": None,
                "errors": None,
                "input_file_id": stored.id,
                "completion_window": "24h",
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": created,
                "in_progress_at": None,
                "expires_at": created + EXPIRY_S,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "usage": None,
                "metadata": params.get("metadata"),
            }
            batch = StoredBatch(body, time.monotonic())
            state.batches[batch.id] = batch
            return JSONResponse(dict(body))

    @app.get("/v1/batches/{batch_id}")
    async def retrieve(request: Request, batch_id: str) -> Response:
        if (refused := check_key(request)) is not None:
            return refused
        with state.lock:
            batch = current(batch_id)
            return (
                JSONResponse(dict(batch.body))
                if batch
                else _error(404, f"No batch found with id '{batch_id}'.")
            )

    @app.get("/v1/batches")
    async def listing(request: Request) -> Response:
        if (refused := check_key(request)) is not None:
            return refused
        limit = min(max(int(request.query_params.get("limit", "20")), 1), 100)
        after = request.query_params.get("after")
        with state.lock:
            newest = [current(b) for b in reversed(list(state.batches))]
            ids = [b.id for b in newest if b]
            start = ids.index(after) + 1 if after in ids else 0
            page = [dict(b.body) for b in newest[start : start + limit] if b]
        has_more = start + limit < len(ids)
        first, last = (page[0]["id"], page[-1]["id"]) if page else (None, None)
        return JSONResponse(
            {"object": "list", "data": page, "first_id": first, "last_id": last, "has_more": has_more}
        )

    @app.post("/v1/batches/{batch_id}/cancel")
    async def cancel(request: Request, batch_id: str) -> Response:
        if (refused := check_key(request)) is not None:
            return refused
        with state.lock:
            batch = current(batch_id)
            if batch is None:
                return _error(404, f"No batch found with id '{batch_id}'.")
            if batch.body["status"] not in ("validating", "in_progress"):
                return _error(409, f"Cannot cancel a batch with status '{batch.body['status']}'.")
            # Nothing of it has run yet (a batch runs when it is first looked at after its delay).
            done = now()
            batch.body.update(status="cancelled", cancelling_at=done, cancelled_at=done)
            return JSONResponse(dict(batch.body))


def standin_from_env() -> BatchStandin:
    return BatchStandin(delay_s=float(os.environ.get("MOCKS_OPENAI_BATCH_DELAY_S", "0")))
