"""Deletes racing other work: another user's upload of the same bytes, and the workers processing the
document. The upload always completes, the delete answers 204, 404 or 409 (never 500), and the workers
stop a deleted document's job quietly, leaving no row, vector or blob of it behind."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import dramatiq
import httpx
import pytest
from fastapi.testclient import TestClient

from ingest.blobs.backends.local import LocalBlobStore
from ingest.errors import BlobMissing
from router.embedder_mock import MockEmbedder
from router.protocols import EmbedResult
from tests.api.conftest import (
    blob_count,
    count_rows,
    new_key,
    runtime_of,
    text_document,
    upload,
    wait_for_job,
)

TRIALS = 40
DELETES = 60
HOLD_LIMIT_S = 60  # a guard against hanging, not a timing assertion


def race(client: TestClient, *requests: tuple[str, str, dict[str, object]]) -> list[httpx.Response]:
    """Send the requests at once through the ASGI app; their answers in order."""
    answers: list[httpx.Response | None] = [None] * len(requests)

    async def send(http: httpx.AsyncClient, i: int, method: str, url: str, kwargs: dict[str, object]) -> None:
        answers[i] = await http.request(method, url, **kwargs)  # type: ignore[arg-type]

    async def send_all() -> None:
        transport = httpx.ASGITransport(app=client.app)
        http = httpx.AsyncClient(transport=transport, base_url="http://api", timeout=None)
        async with http, anyio.create_task_group() as tasks:
            for i, (method, url, kwargs) in enumerate(requests):
                tasks.start_soon(send, http, i, method, url, kwargs)

    anyio.run(send_all)
    assert all(answer is not None for answer in answers)
    return answers  # type: ignore[return-value]


def test_a_delete_never_removes_bytes_another_users_upload_needs(
    start_client: Callable[..., TestClient],
) -> None:
    client = start_client(UPLOADS_PER_MINUTE="1000")
    ada, bob = new_key(client, "ada"), new_key(client, "bob")
    home = str(runtime_of(client).settings.home)
    for trial in range(TRIALS):
        content = text_document(f"shared bytes, trial {trial}", paragraphs=2)
        first = upload(client, ada, content)
        assert first.status_code == 202, first.text
        assert wait_for_job(client, ada, first.json()["job_id"])["status"] == "completed"

        deleted, uploaded = race(
            client,
            ("DELETE", f"/v1/documents/{first.json()['document_id']}", {"headers": ada}),
            (
                "POST",
                "/v1/documents",
                {"headers": bob, "files": {"file": ("same.txt", content, "text/plain")}},
            ),
        )
        assert deleted.status_code == 204, deleted.text
        assert uploaded.status_code == 202, uploaded.text
        job = wait_for_job(client, bob, uploaded.json()["job_id"])
        assert job["status"] == "completed", f"trial {trial}: {job['error']}"
        assert home not in (job["error"] or "")
    # Ada's documents are gone, Bob's remain, each with the bytes it needs: one blob per trial.
    assert count_rows(client, "documents") == TRIALS
    assert blob_count(client) == TRIALS


def test_a_missing_blob_says_which_never_where(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    sha256 = "ab" * 32
    with pytest.raises(BlobMissing) as missing:
        store.get_bytes(sha256)
    assert sha256[:12] in str(missing.value)
    assert str(tmp_path) not in str(missing.value) and "/" not in str(missing.value)


EMBED = MockEmbedder.embed  # the mock's own, which a held call goes on to


class HeldEmbedding:
    """Holds the first embedding call whose texts name `marker` until the test lets it go: the job cannot
    complete meanwhile, so the deletes meet it at work whatever the threads' timing. The document's other
    batches go on, and their transactions collide with the deletes as they happen to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._marker: str | None = None
        self.holding = threading.Event()
        self._go = threading.Event()

    def arm(self, marker: str) -> None:
        with self._lock:
            self._marker, self.holding, self._go = marker, threading.Event(), threading.Event()

    def release(self) -> None:
        self._go.set()

    def hold_if_marked(self, texts: Sequence[str]) -> None:
        with self._lock:
            take = self._marker is not None and any(self._marker in text for text in texts)
            holding, go = self.holding, self._go
            if take:
                self._marker = None
        if take:
            holding.set()
            go.wait(timeout=HOLD_LIMIT_S)


def vector_count(client: TestClient) -> int:
    with runtime_of(client).pool.connection() as conn:
        tables = [table for (table,) in conn.execute("SELECT table_name FROM embedding_spaces")]
        return sum(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables)


def test_deletes_during_processing_answer_204_or_404_never_500(
    start_client: Callable[..., TestClient],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = HeldEmbedding()

    def embed(embedder: MockEmbedder, texts: Sequence[str]) -> EmbedResult:
        held.hold_if_marked(texts)
        return EMBED(embedder, texts)

    monkeypatch.setattr(MockEmbedder, "embed", embed)
    # One chunk a batch: many short embedding transactions for the deletes to collide with.
    client = start_client(
        UPLOADS_PER_MINUTE="1000",
        EMBED_BATCH_CHUNKS="1",
        CHUNK_TOKENS="40",
        CHUNK_OVERLAP="0",
        WORKER_THREADS="4",
    )
    ada = new_key(client, "ada")
    caplog.set_level(logging.WARNING)
    try:
        for n in range(DELETES):
            topic = f"document {n} under deletion"
            held.arm(topic)
            answer = upload(client, ada, text_document(topic, paragraphs=12))
            assert answer.status_code == 202, answer.text
            doc, job_id = answer.json()["document_id"], answer.json()["job_id"]
            assert held.holding.wait(timeout=HOLD_LIMIT_S), f"no embedding call of {topic}"
            job = client.get(f"/v1/jobs/{job_id}", headers=ada).json()
            assert job["status"] == "running", job  # one of its batches is held: it cannot be done
            # Two deletes at once while the workers embed: one deletes, the other finds it gone (or busy).
            url = f"/v1/documents/{doc}"
            answers = race(client, ("DELETE", url, {"headers": ada}), ("DELETE", url, {"headers": ada}))
            statuses = sorted(a.status_code for a in answers)
            assert statuses in ([204, 404], [204, 409]), [a.text for a in answers]
            held.release()  # the held batch comes back with vectors for a document that is gone
    finally:
        held.release()

    # Every deleted document's job went with it; the workers drain without a traceback.
    dramatiq.get_broker().join("ingest")
    assert count_rows(client, "documents") == count_rows(client, "jobs") == count_rows(client, "chunks") == 0
    assert vector_count(client) == 0
    assert blob_count(client) == 0
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert tracebacks == [], [r.getMessage() for r in tracebacks]
