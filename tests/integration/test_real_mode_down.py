"""Real mode never falls back silently: with the OpenAI service down the job is deferred, with no key it
fails, each with the reason; no vector is made by the mock, and a search does not read the mock space."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.config import Settings
from ingest.errors import ServiceUnavailable
from ingest.services.search import search
from ingest.services.submit import submit_file
from ingest.store import jobs
from ingest.store.users import ensure_user
from router.circuit import State
from router.decide import Mode
from workers.inprocess import serving as in_process_workers
from workers.runtime import Runtime

TEXT = "\n\n".join(
    f"Section {n}. The quick brown fox jumps over the lazy dog, again and again." for n in range(8)
)


def _closed_port() -> int:
    """A loopback port nothing listens on: connections are refused, as from a service that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def real_openai(ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "INGEST_VENDOR_MAX_ATTEMPTS": "1",
        "INGEST_CIRCUIT_FAILURE_THRESHOLD": "1",
        "INGEST_CIRCUIT_COOLDOWN_S": "3600",  # stays open for the whole test
        "INGEST_JOB_MAX_RETRIES": "3",
    }.items():
        monkeypatch.setenv(name, value)
    yield


def _run_one(rt: Runtime, tmp_path: Path) -> jobs.Job:
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    (tmp_path / "fox.txt").write_text(TEXT)
    with in_process_workers(rt, threads=2):
        job_id = submit_file(rt, tmp_path / "fox.txt", user=user).job_id
        for _ in range(300):  # bounded: 30 s
            with rt.pool.connection() as conn:
                job = jobs.get(conn, job_id)
            if job is not None and job.status in ("completed", "failed", "deferred"):
                return job
            time.sleep(0.1)
    raise AssertionError(f"the job did not end: {job}")


def _vectors_made(rt: Runtime) -> tuple[int, int]:
    """Embedding spaces created, and chunks with a vector."""
    with rt.pool.connection() as conn:
        spaces = conn.execute("SELECT count(*) FROM embedding_spaces").fetchone()[0]
        embedded = conn.execute("SELECT count(*) FROM chunks WHERE space_id IS NOT NULL").fetchone()[0]
    return spaces, embedded


def test_service_down_defers_the_job_with_the_reason(
    real_openai: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-standin-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{_closed_port()}/v1")
    with Runtime.open(Settings(_env_file=None)) as rt:
        rt.router.modes.set(Mode.REAL, ("openai",))
        job = _run_one(rt, tmp_path)
        assert job.status == "deferred", job.error
        assert job.error.startswith("openai is in real mode and its circuit is open (last failure: openai:")
        assert "Connection error" in job.error
        assert job.deferred_until is not None
        assert rt.router.circuits.state("openai") is State.OPEN
        assert _vectors_made(rt) == (0, 0)  # nothing was silently mocked
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")
        # Nor does a search fall back to the mock space.
        with pytest.raises(ServiceUnavailable, match="circuit is open"):
            search(rt, user, "quick brown fox")


def test_no_key_fails_the_job_with_the_reason(real_openai: None, tmp_path: Path) -> None:
    with Runtime.open(Settings(_env_file=None)) as rt:
        rt.router.modes.set(Mode.REAL, ("openai",))
        job = _run_one(rt, tmp_path)
        assert job.status == "failed"
        assert job.error == "openai is in real mode but its API key is not set"
        assert _vectors_made(rt) == (0, 0)
