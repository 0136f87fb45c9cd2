"""The embedded server is sized to the machine at start: its settings file is written and read."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ingest.db import embedded

GB = 2**30


@pytest.mark.parametrize(
    ("memory", "shared", "cache"),
    [
        (24 * GB, "2048MB", "12288MB"),  # a quarter would be 6 GB: capped
        (4 * GB, "1024MB", "2048MB"),  # a quarter
        (256 * 2**20, "128MB", "128MB"),  # never below PostgreSQL's default
    ],
)
def test_shared_buffers_are_a_quarter_of_memory_within_bounds(memory: int, shared: str, cache: str) -> None:
    assert embedded.server_settings(memory) == {"shared_buffers": shared, "effective_cache_size": cache}


def test_configure_rewrites_the_settings_and_includes_them_once(tmp_path: Path) -> None:
    (tmp_path / "postgresql.conf").write_text("port = 5432\n")
    embedded.configure(tmp_path, {"shared_buffers": "256MB"})
    embedded.configure(tmp_path, {"shared_buffers": "512MB"})
    conf = (tmp_path / "postgresql.conf").read_text().splitlines()
    assert conf[0] == "port = 5432"
    assert conf.count("include_if_exists = 'ingest.conf'") == 1
    settings = (tmp_path / embedded.SETTINGS_FILE).read_text()
    assert "shared_buffers = '512MB'" in settings and "256MB" not in settings


def test_the_session_server_runs_with_the_settings_for_this_machine(pg_server: str) -> None:
    wanted = embedded.server_settings(embedded.memory_bytes())
    with psycopg.connect(pg_server) as conn:
        for name, value in wanted.items():
            row = conn.execute(
                "SELECT setting::bigint * 8 / 1024, sourcefile FROM pg_settings WHERE name = %s", (name,)
            ).fetchone()
            assert row is not None
            assert f"{row[0]}MB" == value  # both settings count 8 kB blocks
            assert row[1].endswith(embedded.SETTINGS_FILE)
