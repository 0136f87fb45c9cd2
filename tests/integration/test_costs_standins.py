"""A real-mode run against the vendor stand-ins (both APIs, one port, real loopback HTTP): the ledger equals,
to the pico-dollar, the price table applied to the usage the stand-ins say they billed."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp

from costs import ledger
from costs.prices import DEFAULT_PRICES
from ingest.config import Settings
from ingest.services.submit import submit_file
from ingest.store import jobs
from ingest.store.users import ensure_user
from mocks import server
from mocks.faults import FaultPlan
from router.backoff import Cooldown, LocalCooldownBackend, RetryPolicy
from router.decide import Mode
from router.llamaparse.client import LlamaParseParser
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage
from workers.runtime import Runtime

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FILES = ("carroll-wonderland.pdf", "carroll-lookingglass.docx", "docker-plugins-volume.md", "Apache-2.0.txt")


@pytest.fixture(autouse=True)
def _no_fault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MOCKS_"):
            monkeypatch.delenv(name)


def test_the_ledger_is_the_price_of_what_the_standins_billed(
    settings: Settings, serving: Callable[[ASGIApp], AbstractContextManager[str]]
) -> None:
    app = server.create_app(FaultPlan())
    with serving(app) as base:
        real = settings.model_copy(
            update={
                "openai_api_key": SecretStr("sk-standin-key"),
                "openai_base_url": f"{base}/v1",
                "openai_embedding_dimensions": 64,
                "llama_cloud_api_key": SecretStr("llx-standin-key"),
                "llama_cloud_base_url": base,
                "llamaparse_tier": "agentic",
                "embed_batch_chunks": 16,
            }
        )
        with Runtime.open(real) as rt:
            # The router's own LlamaParse client, polling fast (no public URL: no webhooks).
            rt.router._real_parser = LlamaParseParser(
                real,
                policy=RetryPolicy(
                    max_attempts=5, initial_backoff_s=0.005, max_backoff_s=0.02, timeout_s=10.0
                ),
                cooldown=Cooldown(LocalCooldownBackend()),
                poll_interval_s=0.01,
                max_poll_interval_s=0.05,
            )
            rt.router.modes.set(Mode.REAL)
            with rt.pool.connection() as conn:
                ledger.set_limit(conn, "all", Decimal(10))
                user = ensure_user(conn, "ada")
            for name in FILES:
                sub = submit_file(rt, SAMPLES / name, user=user)
                for batch in parse_stage(rt, sub.job_id):
                    embed_stage(rt, sub.job_id, batch.first, batch.last)
                with rt.pool.connection() as conn:
                    assert jobs.get(conn, sub.job_id).status == "completed"
            with rt.pool.connection() as conn:
                rows = conn.execute(
                    "SELECT service, state, simulated, amount_usd, usage FROM cost_entries ORDER BY id"
                ).fetchall()
            report = rt.router.meter.report()

    assert {(service, state, simulated) for service, state, simulated, _, _ in rows} == {
        ("llamaparse", "charged", False),
        ("openai", "charged", False),
    }
    parses = [(amount, usage) for service, _, _, amount, usage in rows if service == "llamaparse"]
    embeds = [(amount, usage) for service, _, _, amount, usage in rows if service == "openai"]

    # LlamaParse: every job the stand-in charged, at $1.25 per 1,000 of the credits it charged.
    standin = app.state.llamaparse.state.llamaparse
    billed = {job_id: job.credits for job_id, job in standin.jobs.items()}
    assert len(billed) == len(parses) == len(FILES)
    per_credit = DEFAULT_PRICES.credits_usd(1)
    for amount, usage in parses:
        credits = billed[usage["vendor_job_id"]]
        assert credits == int(credits) == usage["credits"] == usage["pages"] * 10  # agentic
        assert amount == per_credit * int(credits)
    assert sum(a for a, _ in parses) == per_credit * int(standin.credits_charged)

    # OpenAI: the tokens of every request the stand-in served, at $0.02 per 1M.
    served = app.state.openai.state.ledger.entries
    assert sum(u["tokens"] for _, u in embeds) == sum(e.prompt_tokens for e in served)
    assert sum(u["requests"] for _, u in embeds) == len(served)
    assert sum(a for a, _ in embeds) == DEFAULT_PRICES.tokens_usd(
        sum(e.prompt_tokens for e in served), "text-embedding-3-small"
    )

    assert report.total.spent == sum(a for a, _ in parses) + sum(a for a, _ in embeds)
    assert report.total.reserved == 0 and report.total.simulated == 0
