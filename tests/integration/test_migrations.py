"""Migrations: applied once, in order, recorded; concurrent starters do not race."""

from __future__ import annotations

import threading
import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from ingest.db import migrate


def _fresh_database(pg_server: str) -> str:
    name = f"m_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return make_conninfo(pg_server, dbname=name)


def test_concurrent_starters_apply_each_migration_exactly_once(pg_server: str) -> None:
    conninfo = _fresh_database(pg_server)
    expected = [m.version for m in migrate.available()]
    results: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def starter() -> None:
        try:
            start.wait()
            results.append(migrate.apply(conninfo))
        except BaseException as exc:  # noqa: BLE001  (surfaced by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=starter) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    # Exactly one starter applied everything; the others found the work done.
    assert sorted(results, key=len) == [[]] * 5 + [expected]
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        modes = conn.execute("SELECT count(*) FROM router_modes").fetchone()[0]
    assert [r[0] for r in rows] == expected
    assert modes == 2  # the seed rows were inserted once, not once per starter


def test_second_apply_is_a_no_op(database_url: str) -> None:
    assert migrate.apply(database_url) == []


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in migrate.available()]
    assert versions == list(range(1, len(versions) + 1))


def test_keyword_migration_back_fills_existing_chunks(pg_server: str) -> None:
    conninfo = _fresh_database(pg_server)
    keyword = next(m for m in migrate.available() if m.name == "keyword_search")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for migration in migrate.available():
            if migration.version < keyword.version:
                conn.execute(migration.sql)
        owner = conn.execute("INSERT INTO users (name) VALUES ('old') RETURNING id").fetchone()[0]
        doc = conn.execute(
            "INSERT INTO documents (owner_id, sha256, filename, media_type, bytes)"
            " VALUES (%s, 'x', 'old.txt', 'text/plain', 1) RETURNING id",
            (owner,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO chunks (document_id, ordinal, text, token_count, text_hash)"
            " VALUES (%s, 0, 'Running zeppelins were moored at the harbour', 8, 'h')",
            (doc,),
        )
        conn.execute(keyword.sql)
        terms, weights = conn.execute(
            "SELECT search_terms::text, search_weights::text FROM chunks"
        ).fetchone()
    # Read as English: stemmed, stop words gone, one weight per term.
    assert terms == "'harbour' 'moor' 'run' 'zeppelin'"
    assert weights.count(":") == 4
