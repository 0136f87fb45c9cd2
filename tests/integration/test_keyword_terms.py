"""Keyword search's document frequencies (`keyword_terms`, migration 0013) stay exact and per owner.

Each check compares the kept counts with a recount from the chunks themselves, after documents are
ingested through the pipeline, re-ingested as a new version, and deleted, for two owners sharing words."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from ingest.config import Settings
from ingest.db import migrate
from ingest.services.submit import Submitted, submit_file
from ingest.store import documents, vectors
from ingest.store.users import User, ensure_user
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime


@pytest.fixture
def runtime(ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("INGEST_CHUNK_TOKENS", "64")  # several chunks a document
    monkeypatch.setenv("INGEST_CHUNK_OVERLAP", "0")
    with Runtime.open(Settings(_env_file=None)) as rt:
        yield rt


def ingest(rt: Runtime, user: User, path: Path, text: str, *, replace: bool = False) -> Submitted:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    submitted = submit_file(rt, path, user=user, replace=replace)
    for batch in parse_stage(rt, submitted.job_id):
        embed_stage(rt, submitted.job_id, batch.first, batch.last)
    return submitted


def kept(conn: psycopg.Connection, user: User) -> dict[str, int]:
    rows = conn.execute(
        "SELECT lexeme, chunks FROM keyword_terms WHERE owner_id = %s AND chunks <> 0", (user.id,)
    )
    return dict(rows.fetchall())


def recounted(conn: psycopg.Connection, user: User) -> dict[str, int]:
    """The owner's visible chunks holding each lexeme, counted from the chunks."""
    rows = conn.execute(
        "SELECT t.lexeme, count(*) FROM chunks c JOIN documents d ON d.id = c.document_id,"
        " unnest(c.search_terms) t WHERE d.owner_id = %s AND d.status = 'completed' AND c.space_id IS NOT NULL"
        " GROUP BY t.lexeme",
        (user.id,),
    )
    return dict(rows.fetchall())


def paragraphs(words: str, count: int) -> str:
    return "\n\n".join(
        f"Paragraph {p} of the {words} notes: " + " ".join(["filler"] * 40) for p in range(count)
    )


def test_counts_stay_exact_per_owner_through_ingest_reingest_and_delete(
    runtime: Runtime, tmp_path: Path
) -> None:
    with runtime.pool.connection() as conn:
        ada, bob = ensure_user(conn, "ada"), ensure_user(conn, "bob")
    first = ingest(runtime, ada, tmp_path / "ada" / "notes.txt", paragraphs("zeppelin harbour", 8))
    ingest(runtime, bob, tmp_path / "bob" / "notes.txt", paragraphs("zeppelin quartermaster", 3))
    with runtime.pool.connection() as conn:
        ada_counts, bob_counts = kept(conn, ada), kept(conn, bob)
        assert ada_counts == recounted(conn, ada)
        assert bob_counts == recounted(conn, bob)
        chunks_of_ada = conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id = %s", (first.document_id,)
        ).fetchone()[0]
    assert chunks_of_ada > 1
    # A shared word counts each owner's chunks only; a word of the other owner's is not there at all.
    assert ada_counts["zeppelin"] == chunks_of_ada
    assert bob_counts["zeppelin"] < chunks_of_ada
    assert "quartermast" not in ada_counts and "harbour" not in bob_counts

    # A new version (fewer chunks, another word) replaces the old one in the counts.
    ingest(runtime, ada, tmp_path / "ada2" / "notes.txt", paragraphs("zeppelin ledger", 2), replace=True)
    with runtime.pool.connection() as conn:
        ada_counts = kept(conn, ada)
        assert ada_counts == recounted(conn, ada)
        assert kept(conn, bob) == bob_counts
    assert "harbour" not in ada_counts and ada_counts["ledger"] == ada_counts["zeppelin"] < chunks_of_ada

    with runtime.pool.connection() as conn, conn.transaction():
        (remaining,) = conn.execute("SELECT id FROM documents WHERE owner_id = %s", (ada.id,)).fetchall()
        documents.delete(conn, remaining[0])
    with runtime.pool.connection() as conn:
        assert kept(conn, ada) == {} == recounted(conn, ada)
        assert kept(conn, bob) == bob_counts


def test_a_document_counts_only_while_it_is_completed(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.pool.connection() as conn:
        ada = ensure_user(conn, "ada")
    done = ingest(runtime, ada, tmp_path / "notes.txt", paragraphs("zeppelin", 3))
    with runtime.pool.connection() as conn:
        before = kept(conn, ada)
        assert before and before == recounted(conn, ada)
        with conn.transaction():
            documents.set_status(conn, done.document_id, "running")  # as a re-run does
            assert kept(conn, ada) == {}  # in the same transaction as the change
        documents.set_status(conn, done.document_id, "completed")
        conn.commit()
        assert kept(conn, ada) == before


def test_counts_follow_chunks_moved_to_another_space(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.pool.connection() as conn:
        ada = ensure_user(conn, "ada")
    done = ingest(runtime, ada, tmp_path / "notes.txt", paragraphs("zeppelin", 4))
    with runtime.pool.connection() as conn:
        other = vectors.ensure_space(conn, "other-model", 8, simulated=True)
        with conn.transaction():  # half the chunks move, as an upgrade moves them batch by batch
            conn.execute(
                "UPDATE chunks SET space_id = %s WHERE document_id = %s AND ordinal %% 2 = 0",
                (other.id, done.document_id),
            )
        kept_rows = conn.execute(
            "SELECT space_id, lexeme, chunks FROM keyword_terms WHERE owner_id = %s AND chunks <> 0",
            (ada.id,),
        ).fetchall()
        recounted_rows = conn.execute(
            "SELECT c.space_id, t.lexeme, count(*) FROM chunks c, unnest(c.search_terms) t"
            " WHERE c.document_id = %s GROUP BY 1, 2",
            (done.document_id,),
        ).fetchall()
    assert {(s, x): n for s, x, n in kept_rows} == {(s, x): n for s, x, n in recounted_rows}
    assert {s for s, _, _ in kept_rows} == {other.id, done_space(runtime, done)}


def done_space(rt: Runtime, done: Submitted) -> int:
    with rt.pool.connection() as conn:
        row = conn.execute(
            "SELECT space_id FROM chunks WHERE document_id = %s AND ordinal = 1", (done.document_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_migration_counts_the_chunks_already_stored(pg_server: str) -> None:
    name = f"m_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    terms = next(m for m in migrate.available() if m.name == "keyword_terms")
    with psycopg.connect(make_conninfo(pg_server, dbname=name), autocommit=True) as conn:
        for migration in migrate.available():
            if migration.version < terms.version:
                conn.execute(migration.sql)
        owner = conn.execute("INSERT INTO users (name) VALUES ('old') RETURNING id").fetchone()[0]
        space = conn.execute(
            "INSERT INTO embedding_spaces (model, dimensions, simulated, table_name) VALUES ('m', 8, true, 'v') RETURNING id"
        ).fetchone()[0]
        for status, text in (
            ("completed", "zeppelins moored at the harbour"),
            ("failed", "zeppelins adrift"),
        ):
            doc = conn.execute(
                "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes, status)"
                " VALUES (%s, %s, 'old.txt', 'text/plain', 1, %s) RETURNING id",
                (owner, status, status),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO chunks (document_id, ordinal, text, token_count, text_hash, space_id)"
                " VALUES (%s, 0, %s, 5, 'h', %s)",
                (doc, text, space),
            )
        conn.execute(terms.sql)
        counts = dict(conn.execute("SELECT lexeme, chunks FROM keyword_terms WHERE owner_id = %s", (owner,)))
    assert counts == {"zeppelin": 1, "moor": 1, "harbour": 1}  # the failed document's chunk is not visible
