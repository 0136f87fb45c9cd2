"""The batch client seam: what the batch route asks of a Batch API, the state of one batch, and the mock
client (mock mode, or hybrid while the real service cannot serve) that answers as soon as a batch is made.

The real client, over the official SDK, is router.openai_batch (imported only by a process that uses it).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ingest.tokens import count_tokens
from router.batch_packing import Answer
from router.embedder_mock import embed_texts

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True, slots=True)
class BatchState:
    vendor_batch_id: str
    status: str
    expires_at: datetime | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class BatchClient(Protocol):
    kind: str  # 'real', 'mock' or 'standin' (mock vectors standing in for real ones: hybrid)

    def names_dimensions(self, model: str) -> bool:
        """Whether input lines for `model` name `dimensions` (the -3 models take it)."""
        ...

    def upload(self, content: bytes) -> str: ...
    def create(self, input_file_id: str, *, tag: str) -> BatchState: ...
    def find(self, tag: str) -> BatchState | None: ...
    def retrieve(self, vendor_batch_id: str) -> BatchState: ...
    def answers(self, state: BatchState) -> list[Answer]: ...
    def cancel(self, vendor_batch_id: str) -> BatchState: ...


class MockBatchClient:
    """Answers a batch when it is created, with the mock embedder; keeps nothing across processes (a batch
    a restarted process asks about is gone, `expired`, and its inputs follow the job's fallback)."""

    def __init__(self, model: str, dimensions: int, *, kind: str) -> None:
        self.model, self.dimensions, self.kind = model, dimensions, kind
        self._files: dict[str, bytes] = {}
        self._done: dict[str, list[Answer]] = {}

    def names_dimensions(self, model: str) -> bool:
        return True

    def upload(self, content: bytes) -> str:
        file_id = f"mock-file-{secrets.token_hex(8)}"
        self._files[file_id] = content
        return file_id

    def create(self, input_file_id: str, *, tag: str) -> BatchState:
        lines = [json.loads(raw) for raw in self._files.pop(input_file_id).splitlines()]
        texts = [line["body"]["input"] for line in lines]
        vectors = embed_texts(texts, self.dimensions)
        tokens = count_tokens(texts)
        batch_id = f"mock-batch-{secrets.token_hex(8)}"
        self._done[batch_id] = [
            Answer(line["custom_id"], vectors[i].tolist(), tokens[i], None) for i, line in enumerate(lines)
        ]
        return BatchState(batch_id, "completed")

    def find(self, tag: str) -> BatchState | None:
        return None

    def retrieve(self, vendor_batch_id: str) -> BatchState:
        return BatchState(vendor_batch_id, "completed" if vendor_batch_id in self._done else "expired")

    def answers(self, state: BatchState) -> list[Answer]:
        return self._done.pop(state.vendor_batch_id, [])

    def cancel(self, vendor_batch_id: str) -> BatchState:
        return BatchState(vendor_batch_id, "cancelled")
