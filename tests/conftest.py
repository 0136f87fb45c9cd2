"""Shared fixtures: one embedded PostgreSQL + pgvector per test session, a fresh database per test."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from ingest.config import Settings
from ingest.db import embedded, migrate
from workers.process import start_broker

if TYPE_CHECKING:
    from workers.runtime import Runtime

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus-sample"
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(autouse=True)
def in_process_broker() -> None:
    """Each test starts with a fresh in-process broker, as `ingest add` without a broker would: what a test
    submits outside `serving` waits there, and never reaches a broker a developer's environment names."""
    start_broker(Settings(_env_file=None, redis_url=None, rabbitmq_url=None))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Connection URI of the session's embedded server.

    Its data lives outside pytest's temporary folders, which pytest prunes to the last three runs: a
    concurrent run must not delete the data of a server still in use.
    """
    folder = Path(tempfile.mkdtemp(prefix="ingest-test-pg-"))
    yield embedded.start(folder / "pgdata")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> str:
    name = "ingest_template"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    migrate.apply(make_conninfo(pg_server, dbname=name))
    return name


@pytest.fixture
def database_url(pg_server: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test (a copy of the session's template: fast)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield make_conninfo(pg_server, dbname=name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def ingest_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment of a user running the product against the test database, with a clean home."""
    for name in list(os.environ):
        if name.startswith("INGEST_") or name in ("REDIS_URL", "RABBITMQ_URL", "OPENAI_API_KEY", "LLAMA_CLOUD_API_KEY"):
            monkeypatch.delenv(name, raising=False)
    env = {"INGEST_HOME": str(tmp_path / "home"), "DATABASE_URL": database_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(ingest_env: dict[str, str]) -> Settings:
    return Settings(_env_file=None)


@pytest.fixture
def rt(settings: Settings) -> Iterator[Runtime]:
    from workers.runtime import Runtime

    with Runtime.open(settings) as runtime:
        yield runtime
