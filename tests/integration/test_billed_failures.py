"""A vendor call the vendor may have billed, but that failed on our side, stays in the ledger: charged as
`unknown` (at its estimate, with the reason), never released, so the ledger never reads less than the
vendor's bill. A call that certainly never reached the vendor is still released.

The vendor here is an httpx2 transport under the real OpenAI SDK that bills every request it answers, as
OpenAI does, and then fails the way issue 12 saw: an exception on our side once the request was sent (a
module imported half-way by two threads, inside the SDK), or an answer the client cannot read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import httpx2
import numpy as np
import pytest

from costs.prices import price_table
from ingest.config import Settings
from ingest.services.submit import submit_file
from ingest.store.users import ensure_user
from ingest.tokens import count_tokens
from router.modes import Mode
from router.openai_real import OpenAIEmbedder
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime

DIMS = 8
MODEL = "text-embedding-3-small"


@dataclass
class Vendor:
    """Bills every request it answers; `script` says, request by request, what happens after billing."""

    script: list[str] = field(default_factory=list)
    billed_requests: int = 0
    billed_tokens: int = 0
    refused: int = 0

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        step = self.script.pop(0) if self.script else "ok"
        if step == "refused":  # the connection is never made: nothing reaches the vendor
            self.refused += 1
            raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)
        texts = json.loads(request.read())["input"]
        tokens = sum(count_tokens(texts))
        self.billed_requests += 1
        self.billed_tokens += tokens
        if step == "crash":  # the request was sent and billed; our side fails before reading the answer
            raise ImportError("cannot import name 'Response' from partially initialized module 'httpx'")
        if step == "unreadable":  # billed, answered 200, and the body is cut off
            return httpx2.Response(200, content=b'{"object": "list", "data": [{"embedd', request=request)
        rows = np.random.default_rng(len(texts)).normal(size=(len(texts), DIMS)).astype("<f4")
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        body = {
            "object": "list",
            "model": MODEL,
            "data": [
                {"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode()}
                for i, row in enumerate(rows)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return httpx2.Response(200, json=body, request=request)


@pytest.fixture
def real_openai(
    ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runtime, Vendor]]:
    for name, value in {
        "OPENAI_API_KEY": "sk-test-billed-failures-0001",
        "INGEST_OPENAI_EMBEDDING_MODEL": MODEL,
        "INGEST_OPENAI_EMBEDDING_DIMENSIONS": str(DIMS),
        "INGEST_VENDOR_MAX_ATTEMPTS": "2",
        "INGEST_VENDOR_INITIAL_BACKOFF_S": "0.001",
        "INGEST_VENDOR_MAX_BACKOFF_S": "0.002",
        "INGEST_CHUNK_TOKENS": "64",
        "INGEST_CHUNK_OVERLAP": "0",
        "INGEST_EMBED_BATCH_CHUNKS": "100",  # the whole document is one embedding call
    }.items():
        monkeypatch.setenv(name, value)
    vendor = Vendor()
    with Runtime.open(Settings(_env_file=None)) as rt:
        rt.router.modes.set(Mode.REAL, ("openai",))
        http = httpx2.Client(transport=httpx2.MockTransport(vendor.handle))
        rt.router._real_embedder = OpenAIEmbedder(rt.settings, http_client=http)
        yield rt, vendor


def run_job(rt: Runtime, path: Path) -> tuple[UUID, list[BaseException]]:
    """Parse, then deliver the embedding message until it succeeds, as Dramatiq's retries would."""
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    job_id = submit_file(rt, path, user=user).job_id
    (batch,) = parse_stage(rt, job_id)
    failures: list[BaseException] = []
    while True:
        try:
            assert embed_stage(rt, job_id, batch.first, batch.last)
            return job_id, failures
        except Exception as failed:  # noqa: BLE001  (what the worker would log before the retry)
            failures.append(failed)
            assert len(failures) < 5


def ledger(rt: Runtime) -> dict[str, tuple[int, Decimal]]:
    """Real embedding rows by state: how many, and what they count."""
    with rt.pool.connection() as conn:
        rows = conn.execute(
            "SELECT state, count(*), sum(amount_usd) FROM cost_entries"
            " WHERE service = 'openai' AND NOT simulated GROUP BY state"
        ).fetchall()
    return {state: (n, amount) for state, n, amount in rows}


def vendor_bill(vendor: Vendor) -> Decimal:
    return price_table(Settings(_env_file=None)).tokens_usd(vendor.billed_tokens, MODEL)


def document(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(f"Paragraph {i} about harbors, lanterns and quartz." for i in range(30)))
    return path


def test_a_call_that_failed_after_the_vendor_billed_it_is_charged_unknown(
    real_openai, tmp_path: Path
) -> None:
    rt, vendor = real_openai
    # Two deliveries are billed, then fail on our side (an error the client does not retry); the third
    # delivery succeeds.
    vendor.script = ["crash", "crash"]
    _, failures = run_job(rt, document(tmp_path))
    assert len(failures) == 2 and vendor.billed_requests == 3

    rows = ledger(rt)
    assert rows["unknown"][0] == 2 and rows["charged"][0] == 1 and "released" not in rows
    counted = rows["unknown"][1] + rows["charged"][1]
    assert counted >= vendor_bill(vendor) > 0
    with rt.pool.connection() as conn:
        reasons = conn.execute("SELECT unknown_reason FROM cost_entries WHERE state = 'unknown'").fetchall()
    assert all("sent and then failed" in r and "partially initialized" in r for (r,) in reasons)
    # What the day reports as spent counts it too.
    assert rt.router.meter.report().services["openai"].spent == counted


def test_an_unreadable_answer_retried_inside_the_call_is_charged_with_it(real_openai, tmp_path: Path) -> None:
    rt, vendor = real_openai
    vendor.script = ["unreadable"]  # billed, unreadable, retried at once by the client, then answered
    _, failures = run_job(rt, document(tmp_path))
    assert failures == [] and vendor.billed_requests == 2

    rows = ledger(rt)
    assert set(rows) == {"charged"}
    assert rows["charged"][1] == vendor_bill(vendor)


def test_a_call_that_never_reached_the_vendor_is_released(real_openai, tmp_path: Path) -> None:
    rt, vendor = real_openai
    vendor.script = ["refused", "refused"]  # both attempts of the first delivery: connection refused
    _, failures = run_job(rt, document(tmp_path))
    assert len(failures) == 1 and vendor.refused == 2 and vendor.billed_requests == 1

    rows = ledger(rt)
    assert "unknown" not in rows
    assert rows["charged"] == (1, vendor_bill(vendor))
