"""The stand-in's Files and Batches APIs, spoken to by the official SDK over loopback HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import openai
import pytest
from starlette.types import ASGIApp

from ingest.tokens import count_tokens
from mocks import openai_api
from mocks.faults import FaultPlan
from router.batch_packing import Input, input_line

MODEL = "text-embedding-3-small"


@pytest.fixture
def sdk(
    no_fault_env: None, serving: Callable[[ASGIApp], AbstractContextManager[str]]
) -> Iterator[tuple[openai.OpenAI, ASGIApp]]:
    app = openai_api.create_app(FaultPlan())
    with serving(app) as base:
        yield openai.OpenAI(api_key="sk-test", base_url=f"{base}/v1", max_retries=0), app


def _file(client: openai.OpenAI, texts: list[str]) -> str:
    lines = [input_line(Input(f"c{i}", t), model=MODEL, dimensions=8) for i, t in enumerate(texts)]
    return client.files.create(file=("in.jsonl", b"\n".join(lines)), purpose="batch").id


def test_a_batch_runs_after_its_delay_and_bills_the_lines_it_answered(
    sdk: tuple[openai.OpenAI, ASGIApp],
) -> None:
    client, app = sdk
    state = app.state.batches  # type: ignore[attr-defined]
    state.delay_s = 3600
    texts = ["lighthouses at dusk", "harbour cranes", "tidal charts"]
    batch = client.batches.create(
        input_file_id=_file(client, texts),
        endpoint="/v1/embeddings",
        completion_window="24h",
        metadata={"k": "v"},
    )
    assert client.batches.retrieve(batch.id).status == "validating"
    assert [b.id for b in client.batches.list(limit=10)] == [batch.id]
    state.delay_s = 0
    state.faults.fail_lines = 1
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed" and done.metadata == {"k": "v"}
    assert done.request_counts is not None and (
        done.request_counts.completed,
        done.request_counts.failed,
    ) == (2, 1)
    output = [
        json.loads(line) for line in client.files.content(done.output_file_id or "").content.splitlines()
    ]
    errors = [
        json.loads(line) for line in client.files.content(done.error_file_id or "").content.splitlines()
    ]
    assert [o["custom_id"] for o in output] == ["c1", "c2"] and [e["custom_id"] for e in errors] == ["c0"]
    assert len(output[0]["response"]["body"]["data"][0]["embedding"]) == 8
    billed = sum(count_tokens(texts[1:]))
    assert done.usage is not None and done.usage.input_tokens == billed == state.billed_tokens
    # Nothing embedded through the endpoint: the batch's lines are billed by the batch alone.
    assert app.state.ledger.requests == 0  # type: ignore[attr-defined]


def test_cancel_invalid_lines_and_bad_requests(sdk: tuple[openai.OpenAI, ASGIApp]) -> None:
    client, app = sdk
    app.state.batches.delay_s = 3600  # type: ignore[attr-defined]
    waiting = client.batches.create(
        input_file_id=_file(client, ["a"]), endpoint="/v1/embeddings", completion_window="24h"
    )
    cancelled = client.batches.cancel(waiting.id)
    assert cancelled.status == "cancelled" and cancelled.output_file_id is None

    app.state.batches.delay_s = 0  # type: ignore[attr-defined]
    bad = client.files.create(
        file=("in.jsonl", b'{"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {}}'),
        purpose="batch",
    )
    failed = client.batches.retrieve(
        client.batches.create(input_file_id=bad.id, endpoint="/v1/embeddings", completion_window="24h").id
    )
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].code == "mismatched_endpoint" and failed.errors.data[0].line == 1

    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("in.jsonl", b"{}"), purpose="nonsense")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.batches.create(
            input_file_id="file-missing", endpoint="/v1/embeddings", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")
