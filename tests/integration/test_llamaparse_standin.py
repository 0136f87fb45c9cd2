"""The real LlamaParseParser and the official SDK against the stand-in, over real loopback HTTP.

uvicorn serves the stand-in (and, for webhooks, a receiver) from threads on free ports; nothing is
patched between the SDK and them. Waits are short constructor settings; nothing asserts on time.
"""

from __future__ import annotations

import os
import threading
import time
import unicodedata
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from llama_cloud import LlamaCloud
from starlette.types import ASGIApp

from ingest.config import Settings
from ingest.errors import VendorError
from mocks import server
from mocks.faults import FaultPlan
from mocks.llamaparse_api import LlamaParseFaults, StandinState, create_app
from router.backoff import Cooldown, LocalCooldownBackend, RetryPolicy
from router.llamaparse.client import WEBHOOK_PATH, LlamaParseParser, LlamaParseResult
from router.llamaparse.webhook import SIGNATURE_HEADER, WebhookEvent, WebhookVerificationError, verify
from tests.corpus import CORPUS, corpus_manifest
from tests.pdf_writer import pdf

# The protocol tests send a PDF generated here (one quoted fact a page); two read corpus documents.
FOUR_PAGE_FACTS = [
    "The first page says the harbour opens at dawn.",
    "The second page lists the ferries of the northern route.",
    "The third page explains the winter timetable.",
    "The fourth page thanks the volunteers of the lighthouse.",
]
FOUR_PAGES = "four-pages.pdf"
GENERATED = {
    FOUR_PAGES: {"pages": 4, "facts": FOUR_PAGE_FACTS, "fact_pages": [1, 2, 3, 4]},
}
SECRET = "whsec-standin-test"
FAST = LlamaParseFaults(job_delay_s=0.02)


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("MOCKS_", "LLAMA_CLOUD_", "INGEST_")):
            monkeypatch.delenv(name)


class EventWaiter:
    """The worker's side of the webhook: the receiver signals a job id, `__call__` waits for it."""

    def __init__(self) -> None:
        self._arrived: set[str] = set()
        self._condition = threading.Condition()
        self.results: list[bool] = []

    def signal(self, job_id: str) -> None:
        with self._condition:
            self._arrived.add(job_id)
            self._condition.notify_all()

    def __call__(self, job_id: str, timeout_s: float) -> bool:
        with self._condition:
            woke = self._condition.wait_for(lambda: job_id in self._arrived, timeout_s)
            self._arrived.discard(job_id)
        self.results.append(woke)
        return woke


def receiver(waiter: EventWaiter) -> FastAPI:
    """Our webhook endpoint in miniature: verify, drop repeated event ids, wake the waiting worker."""
    app = FastAPI()
    events: list[WebhookEvent] = []
    app.state.events = events

    @app.post(WEBHOOK_PATH)
    async def hook(request: Request) -> Response:
        body = await request.body()
        try:
            event = verify(body, request.headers.get(SIGNATURE_HEADER), SECRET, now=datetime.now(UTC))
        except WebhookVerificationError:
            return Response(status_code=401)
        if all(seen.event_id != event.event_id for seen in events):
            waiter.signal(event.data.job_id)
        events.append(event)
        return Response(status_code=200)

    return app


def parser(base_url: str, *, waiter: EventWaiter | None = None, **settings: Any) -> LlamaParseParser:
    deadline = settings.pop("job_deadline_s", 30.0)
    fallback = settings.pop("webhook_fallback_s", 10.0)
    return LlamaParseParser(
        Settings(
            _env_file=None, llama_cloud_api_key="llx-standin", llama_cloud_base_url=base_url, **settings
        ),
        waiter=waiter,
        policy=RetryPolicy(max_attempts=10, initial_backoff_s=0.005, max_backoff_s=0.02, timeout_s=10.0),
        cooldown=Cooldown(LocalCooldownBackend()),
        poll_interval_s=0.01,
        max_poll_interval_s=0.05,
        webhook_fallback_s=fallback,
        job_deadline_s=deadline,
    )


def norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


def entry_of(name: str) -> dict[str, Any]:
    return GENERATED.get(name) or next(e for e in corpus_manifest() if e["file"] == name)


def parse_file(p: LlamaParseParser, name: str, media_type: str) -> LlamaParseResult:
    if name == FOUR_PAGES:
        data = pdf([[fact] for fact in FOUR_PAGE_FACTS])
    else:
        corpus_manifest()  # skips, saying why, without the corpus
        data = (CORPUS / name).read_bytes()
    return p.parse(data, filename=Path(name).name, media_type=media_type)


def assert_facts_on_their_pages(result: LlamaParseResult, name: str) -> None:
    entry = entry_of(name)
    assert result.document.pages == entry["pages"] == result.usage.pages
    for fact, page in zip(entry["facts"], entry["fact_pages"], strict=True):
        text = norm(" ".join(block.text for block in result.document.blocks if block.page == page))
        assert norm(fact) in text, f"{fact!r} not on page {page}"


def test_pdf_pages_and_facts_match_the_manifest(
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> None:
    app = create_app(faults=FAST)
    with serving(app) as base:
        result = parse_file(parser(base), "pdf/R-FAQ.pdf", "application/pdf")
    assert_facts_on_their_pages(result, "pdf/R-FAQ.pdf")
    state: StandinState = app.state.llamaparse
    (only,) = state.jobs.values()
    assert result.usage.vendor_job_id == only.id and result.usage.simulated is False
    assert result.usage.credits == state.credits_charged == 52 * 3  # cost_effective: 3 credits a page
    assert state.pages_charged == 52


def test_other_formats_come_back_in_pages_of_about_3000_chars(
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> None:
    name = "md/commander-README.md"
    with serving(create_app(faults=FAST)) as base:
        result = parse_file(parser(base, llamaparse_tier="agentic"), name, "text/markdown")
    assert result.usage.pages == result.document.pages and result.usage.pages > 1
    assert result.usage.credits == result.usage.pages * 10
    text = norm(result.document.text)
    assert all(norm(fact) in text for fact in entry_of(name)["facts"])
    assert any(len(block.heading_path) > 1 for block in result.document.blocks)  # headings survive


def test_webhook_wakes_the_worker_and_a_duplicate_changes_nothing(
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> None:
    waiter = EventWaiter()
    hooks = receiver(waiter)
    # A slower job, so the worker is truly waiting when the event comes; each event is sent twice.
    app = create_app(faults=LlamaParseFaults(job_delay_s=0.2, webhook_twice=1))
    with serving(hooks) as public_url, serving(app) as base:
        p = parser(base, waiter=waiter, public_url=public_url, llamaparse_webhook_secret=SECRET)
        result = parse_file(p, FOUR_PAGES, "application/pdf")
        deliveries = _settled_deliveries(app.state.llamaparse, count=2)
    assert_facts_on_their_pages(result, FOUR_PAGES)
    assert True in waiter.results  # woken by the event, not by the fallback poll
    assert [d.event_type for d in deliveries] == ["parse.success", "parse.success"]
    assert len({d.event_id for d in deliveries}) == 1 and {d.status_code for d in deliveries} == {200}
    assert [e.data.job_id for e in hooks.state.events] == [result.usage.vendor_job_id] * 2


def test_a_lost_webhook_only_delays(serving: Callable[[ASGIApp], AbstractContextManager[str]]) -> None:
    waiter = EventWaiter()
    hooks = receiver(waiter)
    app = create_app(faults=LlamaParseFaults(job_delay_s=0.02, webhook_lost=1))
    with serving(hooks) as public_url, serving(app) as base:
        p = parser(
            base,
            waiter=waiter,
            public_url=public_url,
            llamaparse_webhook_secret=SECRET,
            webhook_fallback_s=0.05,
        )
        result = parse_file(p, FOUR_PAGES, "application/pdf")
    assert result.document.pages == 4 and waiter.results and not any(waiter.results)
    assert hooks.state.events == [] and app.state.llamaparse.deliveries == []


def test_a_job_that_never_finishes_is_cancelled_and_resubmitted_once(
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> None:
    app = create_app(faults=LlamaParseFaults(job_delay_s=0.01, stuck_first=1))
    with serving(app) as base:
        result = parse_file(parser(base, job_deadline_s=0.3), FOUR_PAGES, "application/pdf")
    state: StandinState = app.state.llamaparse
    assert [job.status for job in state.jobs.values()] == ["CANCELLED", "COMPLETED"]
    assert (
        result.attempted_job_ids == list(state.jobs)
        and result.usage.vendor_job_id == result.attempted_job_ids[1]
    )
    assert state.credits_charged == result.usage.credits == 4 * 3  # the cancelled job cost nothing
    assert_facts_on_their_pages(result, FOUR_PAGES)


def test_a_file_that_always_fails_is_tried_twice_then_refused(
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> None:
    app = create_app(faults=LlamaParseFaults(job_delay_s=0.01, fail_always=1))
    with serving(app) as base, pytest.raises(VendorError, match="failed to parse twice"):
        parse_file(parser(base), FOUR_PAGES, "application/pdf")
    assert [job.status for job in app.state.llamaparse.jobs.values()] == ["FAILED", "FAILED"]


def test_thirty_percent_429_and_500_still_completes_once(
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> None:
    # Seed 15 answers the first upload 429 and the first job creation 500 (the per-route draws of
    # mocks.faults are fixed for a seed), so both the cooldown and the lost-create lookup are exercised.
    plan = FaultPlan(rate_429=0.15, rate_500=0.15, retry_after_s=0.01, seed=15)
    app = create_app(plan, faults=FAST)
    with serving(app) as base:
        result = parse_file(parser(base), FOUR_PAGES, "application/pdf")
    state: StandinState = app.state.llamaparse
    stats = state.injector.stats
    assert stats.by_kind["rate_429"] > 0 and stats.by_kind["rate_500"] > 0
    assert len(state.jobs) == 1 and state.credits_charged == result.usage.credits == 12
    assert_facts_on_their_pages(result, FOUR_PAGES)


def test_through_the_combined_mock_server(serving: Callable[[ASGIApp], AbstractContextManager[str]]) -> None:
    with serving(server.create_app(FaultPlan())) as base:
        result = parse_file(parser(base, llamaparse_tier="fast"), FOUR_PAGES, "application/pdf")
    assert result.parser == "llamaparse:fast" and result.usage.credits == 4  # fast: 1 credit a page
    assert_facts_on_their_pages(result, FOUR_PAGES)


def test_sdk_one_step_upload_and_the_key_check(
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> None:
    app = create_app(faults=FAST, api_key="llx-right")
    with serving(app) as base:
        client = LlamaCloud(api_key="llx-right", base_url=base, max_retries=0)
        job = client.parsing.create(
            tier="agentic_plus",
            version="latest",
            upload_file=("a.md", b"# Title\n\nHello there.", "text/markdown"),
        )
        while (answer := client.parsing.get(job.id, expand=["markdown", "usage"])).job.status == "PENDING":
            time.sleep(0.01)
        with pytest.raises(VendorError, match="API key was refused"):
            parse_file(parser(base), FOUR_PAGES, "application/pdf")
    assert answer.job.status == "COMPLETED" and answer.job.usage and answer.job.usage.credits == 45
    assert answer.markdown and answer.markdown.pages[0].markdown == "# Title\n\nHello there."


def _settled_deliveries(state: StandinState, count: int) -> list[Any]:
    """The stand-in's deliveries once `count` have been made (they are sent in the background)."""
    deadline = time.monotonic() + 10
    while len(state.deliveries) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(state.deliveries)
