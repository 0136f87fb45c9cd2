"""Document versions: a new version swaps in atomically, and only its changed chunks are paid for."""

from __future__ import annotations

import threading
from pathlib import Path
from uuid import UUID

import pytest

from ingest.config import Settings
from ingest.services.search import search
from ingest.services.submit import submit_file
from ingest.store.users import User, ensure_user
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime

QUERY = "ledger quorum replica"


def version(path: Path, label: str, *, paragraphs: int = 16) -> Path:
    """Every paragraph matches QUERY; the label makes each version's bytes (and a few chunks) differ."""
    lines = [
        f"Paragraph {p}: ledger quorum replica "
        + " ".join(f"t{(p * 13 + i) % 89}" for i in range(30))
        + (f" version-{label}." if p % 4 == 0 else ".")
        for p in range(paragraphs)
    ]
    path.write_text("\n\n".join(lines))
    return path


@pytest.fixture
def runtime(ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("INGEST_CHUNK_TOKENS", "64")
    monkeypatch.setenv("INGEST_CHUNK_OVERLAP", "0")
    monkeypatch.setenv("INGEST_EMBED_BATCH_CHUNKS", "2")
    with Runtime.open(Settings(_env_file=None)) as rt:
        yield rt


def run_job(rt: Runtime, job_id, between_batches=lambda: None) -> None:
    for batch in parse_stage(rt, job_id):
        between_batches()
        embed_stage(rt, job_id, batch.first, batch.last)


def versions_seen(rt: Runtime, user: User, names: dict[UUID, str]) -> set[str]:
    """Which versions a search's results come from (empty when it found nothing)."""
    return {names.get(h.document_id, "?") for h in search(rt, user, QUERY, top_k=20)}


def test_a_concurrent_search_sees_the_old_or_the_new_version_never_a_mix(
    runtime: Runtime, tmp_path: Path
) -> None:
    with runtime.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    old = submit_file(runtime, version(tmp_path / "notes.txt", "old"), user=user)
    run_job(runtime, old.job_id)
    names = {old.document_id: "old"}
    assert versions_seen(runtime, user, names) == {"old"}

    new_dir = tmp_path / "v2"
    new_dir.mkdir()
    new = submit_file(runtime, version(new_dir / "notes.txt", "new"), user=user, replace=True)
    assert new.document_id != old.document_id
    names[new.document_id] = "new"

    seen: list[set[str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        try:
            while not stop.is_set():
                seen.append(versions_seen(runtime, user, names))
        except BaseException as exc:  # noqa: BLE001 (surfaced by the assertion below)
            errors.append(exc)

    searcher = threading.Thread(target=search_loop)
    searcher.start()
    try:
        # While the new version is built batch by batch, searches keep running against the store.
        run_job(runtime, new.job_id, between_batches=lambda: stop.wait(0.02))
        for _ in range(20):
            stop.wait(0.01)
    finally:
        stop.set()
        searcher.join()

    assert not errors
    assert seen and all(s in ({"old"}, {"new"}) for s in seen), [
        s for s in seen if s not in ({"old"}, {"new"})
    ]
    assert {"old"} in seen and seen[-1] == {"new"}
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT id, status FROM documents WHERE owner_id = %s", (user.id,)).fetchall()
    assert rows == [(new.document_id, "completed")]


def test_versions_matched_by_external_id_and_only_changed_chunks_paid(
    runtime: Runtime, tmp_path: Path
) -> None:
    with runtime.pool.connection() as conn:
        user = ensure_user(conn, "ada")
        other = ensure_user(conn, "grace")
    first = version(tmp_path / "a.txt", "one")
    v1 = submit_file(runtime, first, user=user, external_id="handbook")
    run_job(runtime, v1.job_id)
    theirs = submit_file(runtime, first, user=other, external_id="handbook")  # another owner: untouched
    run_job(runtime, theirs.job_id)

    lines = first.read_text().split("\n\n")
    lines[5] = "Paragraph 5 was rewritten: ledger quorum replica, with entirely different words now."
    second = tmp_path / "renamed.txt"
    second.write_text("\n\n".join(lines))
    v2 = submit_file(runtime, second, user=user, external_id="handbook")
    run_job(runtime, v2.job_id)

    with runtime.pool.connection() as conn:
        docs = conn.execute("SELECT id FROM documents ORDER BY created_at").fetchall()
        sent = conn.execute(
            "SELECT document_id, sum((usage->>'tokens')::bigint) FROM cost_entries"
            " WHERE stage = 'embed' AND state = 'charged' GROUP BY document_id"
        ).fetchall()
        tokens_v1 = conn.execute(
            "SELECT sum(token_count) FROM chunks WHERE document_id = %s", (theirs.document_id,)
        ).fetchone()[0]
    assert [d[0] for d in docs] == [theirs.document_id, v2.document_id]
    paid = dict(sent)
    assert None in paid  # v1's charges stay in the ledger after it is replaced
    assert 0 < paid[v2.document_id] < tokens_v1 / 4  # only the rewritten chunk was sent
    # The other owner's identical upload paid for every chunk: the embedding cache is per user.
    assert paid[theirs.document_id] == tokens_v1


def test_without_replace_the_same_filename_is_another_document(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    old = submit_file(runtime, version(tmp_path / "n.txt", "old"), user=user)
    run_job(runtime, old.job_id)
    (tmp_path / "b").mkdir()
    new = submit_file(runtime, version(tmp_path / "b" / "n.txt", "new"), user=user)
    run_job(runtime, new.job_id)
    assert versions_seen(runtime, user, {old.document_id: "old", new.document_id: "new"}) == {"old", "new"}
