"""Helpers of the real-vendor tests: the one-port stand-ins served on loopback, the environment that points
the real clients at them, and the comparison of our cost ledger with what the stand-ins say they billed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest
import uvicorn
from starlette.types import ASGIApp

from costs.prices import PriceTable
from mocks.llamaparse_jobs import StandinState
from mocks.openai_api import Ledger


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """The app on a free loopback port, served by uvicorn from a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # A short graceful shutdown: a request still hanging in a timeout fault must not hold the test.
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def point_real_clients_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    """The SDKs' own variables, as a user sets them for `ingest mocks serve`; polls fast (no webhooks)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-standin-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{base_url}/v1")
    monkeypatch.setenv("LLAMA_CLOUD_API_KEY", "llx-standin-key")
    monkeypatch.setenv("LLAMA_CLOUD_BASE_URL", base_url)
    monkeypatch.setenv("INGEST_LLAMAPARSE_POLL_INTERVAL_S", "0.02")
    monkeypatch.setenv("INGEST_LLAMAPARSE_MAX_POLL_INTERVAL_S", "0.1")


def openai_records(app: object) -> Ledger:
    return app.state.openai.state.ledger  # type: ignore[attr-defined]


def llamaparse_records(app: object) -> StandinState:
    return app.state.llamaparse.state.llamaparse  # type: ignore[attr-defined]


def assert_ledger_is_what_the_standins_billed(
    conninfo: str,
    app: object,
    document_ids: Sequence[UUID],
    prices: PriceTable,
    model: str,
    *,
    unconfirmed_requests: int = 0,
) -> None:
    """Our real charges for these documents are, call for call, what the stand-ins recorded as served,
    priced by the price table: every billed call is in the ledger exactly once, and nothing else is.

    Except `unconfirmed_requests` OpenAI requests whose answer our client stopped waiting for (a read
    timeout): the stand-in billed nothing for them, a real vendor may have, so the ledger charges them
    too (router.unsettled) and reads more than the stand-in's bill, never less."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT service, state, amount_usd, usage FROM cost_entries"
            " WHERE NOT simulated AND document_id = ANY(%s) ORDER BY id",
            (list(document_ids),),
        ).fetchall()
    states = {state for _, state, _, _ in rows}
    # Nothing held, nothing released; a call given up on after unconfirmed requests is charged `unknown`.
    assert states == {"charged"} or (unconfirmed_requests and states == {"charged", "unknown"}), states
    parses = [(amount, usage) for service, _, amount, usage in rows if service == "llamaparse"]
    embeds = [(amount, usage) for service, _, amount, usage in rows if service == "openai"]

    # LlamaParse bills jobs that complete: each one charged once, for the credits the stand-in charged.
    standin = llamaparse_records(app)
    billed = {job.id: job.credits for job in standin.jobs.values() if job.credits is not None}
    assert len(parses) == len(document_ids)  # one parse charge per document, whatever was retried
    assert {usage["vendor_job_id"]: usage["credits"] for _, usage in parses} == billed
    for amount, usage in parses:
        assert amount == prices.credits_usd(usage["credits"])

    # OpenAI bills every request it served: as many requests and tokens in the ledger as it served.
    served = openai_records(app).entries
    served_tokens = sum(entry.prompt_tokens for entry in served)
    charged_tokens = sum(usage["tokens"] for _, usage in embeds)
    assert sum(usage["requests"] for _, usage in embeds) == len(served) + unconfirmed_requests
    assert charged_tokens > served_tokens if unconfirmed_requests else charged_tokens == served_tokens
    for amount, usage in embeds:
        assert amount == prices.tokens_usd(usage["tokens"], model)
    total = sum((amount for amount, _ in parses + embeds), Decimal(0))
    bill = prices.credits_usd(int(sum(billed.values()))) + prices.tokens_usd(served_tokens, model)
    assert total > bill if unconfirmed_requests else total == bill
