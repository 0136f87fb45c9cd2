"""Helpers of the pipeline-level cost tests: a billing fake of the OpenAI client, a runtime with a
settable clock and small batches, and a text document of several batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from ingest.config import Settings
from ingest.services.submit import Submitted, submit_file
from ingest.store.users import ensure_user
from ingest.tokens import count_tokens
from router.embedder_mock import embed_texts
from router.protocols import EmbedResult
from workers.runtime import Runtime

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
def metered_runtime(settings: Settings) -> Iterator[tuple[Runtime, BillingEmbedder, Clock]]:
    settings = settings.model_copy(
        update={
            "chunk_tokens": 64,
            "chunk_overlap": 8,
            "embed_batch_chunks": 4,
            "openai_api_key": SecretStr("sk-test-not-a-key"),
        }
    )
    with Runtime.open(settings) as rt:
        fake = BillingEmbedder(settings.openai_embedding_model)
        rt.router._real_embedder = fake  # the router builds real clients lazily; this one is ours
        clock = Clock()
        rt.router.meter.clock = clock
        yield rt, fake, clock


def submit_text(rt: Runtime, folder: Path, paragraphs: int = 12) -> Submitted:
    lines = []
    for p in range(paragraphs):
        words = [WORDS[(p * 7 + i * 3) % len(WORDS)] for i in range(60)]
        lines.append(f"Paragraph {p}. " + " ".join(words) + ".")
    path = folder / "doc.txt"
    path.write_text("\n\n".join(lines))
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    return submit_file(rt, path, user=user)
