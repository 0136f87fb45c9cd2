"""OpenAI's Files and Batches APIs through the official SDK: the real batch client (router.batches).

It uploads a JSONL file (`purpose="batch"`), creates a batch for `/v1/embeddings` with the 24h completion
window and our batch id in its `metadata` (so a process that died before recording the vendor's id finds
the batch again with `find`), retrieves it, and reads its output and error files. Pointed at the
stand-in (OPENAI_BASE_URL), it is the same client.
"""

from __future__ import annotations

from datetime import UTC, datetime

import openai

from ingest.config import Settings
from ingest.errors import ServiceUnavailable
from router.batch_packing import ENDPOINT, Answer, read_answers
from router.batches import BatchState
from router.openai_real import supports_dimensions

SERVICE = "openai"
TAG = "ingest_batch"  # the metadata key that carries our batch id


def _at(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _state(batch: openai.types.Batch) -> BatchState:
    errors = batch.errors.data if batch.errors and batch.errors.data else []
    error = "; ".join(f"{e.code}: {e.message}" for e in errors)[:500] or None
    return BatchState(
        vendor_batch_id=batch.id,
        status=batch.status,
        expires_at=_at(batch.expires_at),
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        error=error,
    )


class OpenAIBatchClient:
    """Not tied to a model: each batch's lines name the model and dimensions of the space it embeds for
    (the active one when it is made, recorded on its row)."""

    kind = "real"

    def __init__(self, settings: Settings) -> None:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        if not key:
            raise ServiceUnavailable(f"{SERVICE}: OPENAI_API_KEY is not set")
        # The SDK's own retries: these calls are few (one upload and create per batch, a status read per
        # poll), and a failed one is simply made again at the next poll.
        self._client = openai.OpenAI(
            api_key=key, base_url=settings.openai_base_url, timeout=settings.vendor_timeout_s
        )

    def names_dimensions(self, model: str) -> bool:
        return supports_dimensions(model)

    def upload(self, content: bytes) -> str:
        return self._client.files.create(file=("embeddings.jsonl", content), purpose="batch").id

    def create(self, input_file_id: str, *, tag: str) -> BatchState:
        batch = self._client.batches.create(
            input_file_id=input_file_id, endpoint=ENDPOINT, completion_window="24h", metadata={TAG: tag}
        )
        return _state(batch)

    def find(self, tag: str) -> BatchState | None:
        # Newest first; ours was made minutes ago, so the first pages hold it when it exists.
        for n, batch in enumerate(self._client.batches.list(limit=100)):
            if (batch.metadata or {}).get(TAG) == tag:
                return _state(batch)
            if n >= 1000:
                return None
        return None

    def retrieve(self, vendor_batch_id: str) -> BatchState:
        return _state(self._client.batches.retrieve(vendor_batch_id))

    def answers(self, state: BatchState) -> list[Answer]:
        found: list[Answer] = []
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                found += read_answers(self._client.files.content(file_id).content)
        return found

    def cancel(self, vendor_batch_id: str) -> BatchState:
        return _state(self._client.batches.cancel(vendor_batch_id))

    def close(self) -> None:
        self._client.close()
