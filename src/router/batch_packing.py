"""Packing embedding inputs into Batch API files, and reading the lines back. Pure functions.

One input line per chunk (`custom_id` is the chunk's id, so an output line names its chunk), a
`POST /v1/embeddings` body each. A batch takes at most 50,000 requests and a 200 MB input file (the
Batch API's limits, SDK docstring of `batches.create`); inputs are packed in the order given, each batch
as full as both limits allow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from router.runs import TooLarge, greedy_runs

MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
ENDPOINT: Final = "/v1/embeddings"


@dataclass(frozen=True, slots=True)
class Input:
    custom_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    """One line of a batch's output or error file: the vector's floats, or why there is none."""

    custom_id: str
    embedding: list[float] | None
    tokens: int
    error: str | None


class _Input(Protocol):
    @property
    def chunk_id(self) -> int: ...


ItemT = TypeVar("ItemT", bound=_Input)


def split_answers(
    items: Sequence[ItemT], answers: dict[str, Answer]
) -> tuple[list[tuple[ItemT, Answer]], list[ItemT]]:
    """The items a batch embedded, each with its answer (matched by `custom_id`, the chunk id), and those
    it did not (a failed line, or none: an expired batch)."""
    answered: list[tuple[ItemT, Answer]] = []
    missed: list[ItemT] = []
    for item in items:
        answer = answers.get(str(item.chunk_id))
        if answer is not None and answer.embedding:
            answered.append((item, answer))
        else:
            missed.append(item)
    return answered, missed


def input_line(item: Input, *, model: str, dimensions: int | None) -> bytes:
    body: dict[str, Any] = {"model": model, "input": item.text, "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    line = {"custom_id": item.custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode()


def pack(
    lines: Sequence[bytes], *, max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_FILE_BYTES
) -> list[range]:
    """Consecutive runs of `lines` that each fit one batch file (a newline between lines)."""
    if max_requests < 1:
        raise ValueError("max_requests must be positive")
    try:
        return greedy_runs([len(line) + 1 for line in lines], max_items=max_requests, max_size=max_bytes)
    except TooLarge as big:
        raise ValueError(f"input line {big.index} alone is larger than a batch file may be") from None


def read_answers(content: bytes) -> list[Answer]:
    """The lines of an output or error file. A line answered 200 carries its vector and billed tokens;
    any other line carries the vendor's reason."""
    answers = []
    for raw in content.splitlines():
        if not raw.strip():
            continue
        line = json.loads(raw)
        custom_id = str(line["custom_id"])
        response = line.get("response") or {}
        body = response.get("body") or {}
        if response.get("status_code") == 200:
            data = body["data"]
            tokens = int(body.get("usage", {}).get("prompt_tokens", 0))
            answers.append(Answer(custom_id, [float(x) for x in data[0]["embedding"]], tokens, None))
            continue
        error = line.get("error") or body.get("error") or {}
        reason = error.get("code") or error.get("type") or f"status {response.get('status_code')}"
        answers.append(Answer(custom_id, None, 0, f"{reason}: {error.get('message', '')}"[:300]))
    return answers
