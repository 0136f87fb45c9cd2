"""Fixtures of the integration tests: `ingest worker` processes and CLI runs against the test's
environment, a runtime whose embeddings are billed like OpenAI's, on a settable clock, and the OpenAI
stand-in's Batch API in real mode."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from ingest.cli.main import app as cli
from ingest.config import Settings
from ingest.services.submit import Submitted, submit_file
from ingest.store.users import ensure_user
from ingest.tokens import count_tokens
from mocks.openai_batch_api import BatchStandin
from router.embedder_mock import embed_texts
from router.protocols import EmbedResult
from workers.runtime import Runtime

INGEST = str(Path(sys.executable).parent / "ingest")


# --- `ingest worker` and the CLI as separate processes ------------------------------------------------------
@contextmanager
def _worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`ingest worker` in a session of its own (its forks go with it), stopped as a supervisor would:
    SIGTERM to the group, SIGKILL if it has not stopped after 20 s (unless the test killed it first)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [INGEST, "worker", "--processes", "1", "--threads", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):  # the test may have killed the group already
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _run_ingest(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [INGEST, *args], check=False, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def worker_process() -> Callable[[dict[str, str], Path], AbstractContextManager[subprocess.Popen[bytes]]]:
    """`with worker_process(env, log_path) as proc:` one `ingest worker` (1 process, 2 threads)."""
    return _worker_process


@pytest.fixture
def run_ingest() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_ingest(env, *args, timeout=240)`: the `ingest` command in a process of its own."""
    return _run_ingest


# --- a runtime billed like the real OpenAI, on a settable clock ---------------------------------------------
WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
]


class BillingEmbedder:
    """Stands in for the real OpenAI client: real (simulated=False), bills tokens as OpenAI counts them."""

    def __init__(self, model: str, dimensions: int = 32) -> None:
        self.model, self.dimensions = model, dimensions
        self.calls: list[int] = []  # billed tokens per call

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        tokens = sum(count_tokens(texts))
        self.calls.append(tokens)
        return EmbedResult(embed_texts(texts, self.dimensions), prompt_tokens=tokens, simulated=False)


class Clock:
    """A settable clock for the meter: the budget day rolls over when a test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def _metered_runtime(settings: Settings) -> Iterator[tuple[Runtime, BillingEmbedder, Clock]]:
    settings = settings.model_copy(
        update={
            "chunk_tokens": 64,
            "chunk_overlap": 8,
            "embed_batch_chunks": 4,
            "openai_api_key": SecretStr("sk-test-not-a-key"),
            # The fake's size: the configured space is the one its vectors make active.
            "openai_embedding_dimensions": 32,
        }
    )
    with Runtime.open(settings) as rt:
        fake = BillingEmbedder(settings.openai_embedding_model, settings.openai_embedding_dimensions)
        rt.router._real_embedder = fake  # the router builds real clients lazily; this one is ours
        clock = Clock()
        rt.router.meter.clock = clock
        yield rt, fake, clock


def _submit_text(rt: Runtime, folder: Path, paragraphs: int = 12) -> Submitted:
    lines = []
    for p in range(paragraphs):
        words = [WORDS[(p * 7 + i * 3) % len(WORDS)] for i in range(60)]
        lines.append(f"Paragraph {p}. " + " ".join(words) + ".")
    path = folder / "doc.txt"
    path.write_text("\n\n".join(lines))
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    return submit_file(rt, path, user=user)


@pytest.fixture
def metered_runtime() -> Callable[[Settings], AbstractContextManager[tuple[Runtime, BillingEmbedder, Clock]]]:
    """`with metered_runtime(settings) as (rt, vendor, clock):` small chunks and batches, a real-billing
    stand-in for the OpenAI client, and the meter on a clock the test moves."""
    return _metered_runtime


@pytest.fixture
def submit_text() -> Callable[..., Submitted]:
    """`submit_text(rt, folder, paragraphs=12)`: a text document of several batches, submitted for "ada"."""
    return _submit_text


# --- the OpenAI stand-in's Batch API in real mode (the batch route's tests) -------------------------------
@pytest.fixture
def batch_standin_settings() -> dict[str, str]:
    """INGEST_* variables a module adds to `batch_standin`'s (override this fixture in the module)."""
    return {}


@pytest.fixture
def batch_standin(
    standins: Any, batch_standin_settings: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The stand-ins, OpenAI in real mode (parsing stays mock: free and local), batches followed fast."""
    for name, value in {
        "INGEST_OPENAI_EMBEDDING_DIMENSIONS": "64",
        "INGEST_SWEEP_INTERVAL_S": "0.2",
        "INGEST_BATCH_POLL_S": "0.05",
        **batch_standin_settings,
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["mode", "set", "real", "--service", "openai"], catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return standins


def batches_of(app: Any) -> BatchStandin:
    """The Batch API state of the stand-ins' app."""
    return app.state.openai.state.batches  # type: ignore[no-any-return]


def db_rows(database_url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()
