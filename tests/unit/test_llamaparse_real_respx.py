"""LlamaParseParser against pinned HTTP answers (respx intercepts the SDK's own httpx client)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from ingest.config import Settings
from ingest.errors import VendorError
from ingest.parsed import Submission
from router.backoff import Cooldown, LocalCooldownBackend, RetriesExhausted, RetryPolicy
from router.llamaparse.client import SUBMISSION_TAG, LlamaParseParser, LlamaParseResult
from tests.clocks import FakeClock

BASE = "https://llamaparse.test"
KEY = "llx-test-key-0123456789abcdef"
SECRET = "whsec-test"
FILES = f"{BASE}/api/v1/beta/files"
PARSE = f"{BASE}/api/v2/parse"
PDF = b"%PDF-1.7 not really parsed here"

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("LLAMA_CLOUD_", "INGEST_")):
            monkeypatch.delenv(name)


@pytest.fixture
def fake_time() -> FakeClock:
    """The parser's and the cooldown's clock and sleep: every wait is recorded, none is slept."""
    return FakeClock(now=0.0)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


def make_parser(fake_time: FakeClock, *, waiter: Any = None, **settings: Any) -> LlamaParseParser:
    values: dict[str, Any] = {
        "llama_cloud_api_key": KEY,
        "llama_cloud_base_url": BASE,
        "llamaparse_tier": "agentic",
        "llamaparse_version": "2026-06-15",
    }
    values.update(settings)
    return LlamaParseParser(
        Settings(_env_file=None, **values),
        waiter=waiter,
        policy=RetryPolicy(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.002, timeout_s=2.0),
        cooldown=Cooldown(LocalCooldownBackend(clock=fake_time)),
        poll_interval_s=1.0,
        max_poll_interval_s=8.0,
        webhook_fallback_s=30.0,
        job_deadline_s=60.0,
        sleep=fake_time.sleep,
        clock=fake_time,
    )


def job(job_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "project_id": "proj", "status": status, **extra}


def result(job_id: str, pages: list[str], credits: float | None = 20.0) -> dict[str, Any]:
    return {
        "job": job(job_id, "COMPLETED", usage={"credits": credits}),
        "markdown": {
            "pages": [{"page_number": n, "markdown": md, "success": True} for n, md in enumerate(pages, 1)]
        },
    }


def uploaded() -> httpx.Response:
    return httpx.Response(200, json={"id": "file-1", "name": "doc.pdf", "project_id": "proj"})


def jobs_api(statuses: dict[str, list[str]], results: dict[str, dict[str, Any]]) -> Handler:
    """GET /api/v2/parse/{id}: each plain read takes the job's next status (the last one repeats)."""

    def handle(request: httpx.Request) -> httpx.Response:
        job_id = request.url.path.rsplit("/", 1)[1]
        if request.url.params.get_list("expand"):
            return httpx.Response(200, json=results[job_id])
        queue = statuses[job_id]
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        return httpx.Response(
            200, json={"job": job(job_id, status, error_message="boom" * (status == "FAILED"))}
        )

    return handle


def creates(*job_ids: str) -> Handler:
    remaining = list(job_ids)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=job(remaining.pop(0), "PENDING"))

    return handle


PAGES = [
    "# Intro\n\nFirst page text.",
    "More intro.\n\n## Details\n\n- an item\n\n| a | b |\n|---|---|\n| 1 | 2 |",
]


def test_happy_path_pins_every_request(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    upload = mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-1"))
    reads = mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=jobs_api(
            {"job-1": ["PENDING", "RUNNING", "COMPLETED"]}, {"job-1": result("job-1", PAGES)}
        )
    )

    parsed = make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    sent = upload.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert b'name="purpose"\r\n\r\nparse' in sent.content and b'filename="doc.pdf"' in sent.content
    body = json.loads(create.calls.last.request.content)
    assert (body["tier"], body["version"], body["file_id"]) == ("agentic", "2026-06-15", "file-1")
    assert SUBMISSION_TAG in body["user_metadata"] and "webhook_configurations" not in body
    expands = [call.request.url.params.get_list("expand") for call in reads.calls]
    assert expands == [[], [], [], ["markdown", "usage"]]  # three status polls, then the result

    assert isinstance(parsed, LlamaParseResult)
    assert parsed.parser == "llamaparse:agentic"
    assert (parsed.usage.pages, parsed.usage.credits, parsed.usage.vendor_job_id) == (2, 20, "job-1")
    assert parsed.usage.simulated is False and parsed.attempted_job_ids == ["job-1"]
    blocks = [(b.page, b.kind, b.heading_path, b.text) for b in parsed.document.blocks]
    assert blocks == [
        (1, "heading", ("Intro",), "Intro"),
        (1, "paragraph", ("Intro",), "First page text."),
        (2, "paragraph", ("Intro",), "More intro."),  # the section carries over the page break
        (2, "heading", ("Intro", "Details"), "Details"),
        (2, "list", ("Intro", "Details"), "- an item"),
        (2, "table", ("Intro", "Details"), "a | b\n1 | 2"),
    ]
    assert parsed.document.pages == 2 and not parsed.document.partial


def test_public_url_asks_for_signed_webhooks_and_waits_on_them(
    fake_time: FakeClock, mock: respx.MockRouter
) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-1"))
    mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=jobs_api({"job-1": ["COMPLETED"]}, {"job-1": result("job-1", PAGES)})
    )
    woken: list[str] = []

    def waiter(job_id: str, timeout_s: float) -> bool:
        woken.append(job_id)
        return True

    parser = make_parser(
        fake_time, waiter=waiter, public_url="https://ingest.example.com/", llamaparse_webhook_secret=SECRET
    )
    parser.parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert json.loads(create.calls.last.request.content)["webhook_configurations"] == [
        {
            "webhook_url": "https://ingest.example.com/v1/webhooks/llamaparse",
            "webhook_events": ["parse.success", "parse.error", "parse.partial_success", "parse.cancelled"],
            "webhook_signing_secret": SECRET,
            "webhook_output_format": "json",
        }
    ]
    assert woken == ["job-1"]


def test_no_webhooks_without_a_secret_to_verify_them(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-1"))
    mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=jobs_api({"job-1": ["COMPLETED"]}, {"job-1": result("job-1", PAGES)})
    )
    make_parser(fake_time, public_url="https://ingest.example.com").parse(
        PDF, filename="doc.pdf", media_type="application/pdf"
    )
    assert "webhook_configurations" not in json.loads(create.calls.last.request.content)


def test_429_waits_retry_after_in_the_shared_cooldown(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    limited = httpx.Response(429, headers={"retry-after": "7"}, json={"detail": "Too many requests"})
    upload = mock.post(FILES).mock(side_effect=[limited, uploaded()])
    mock.post(PARSE).mock(side_effect=creates("job-1"))
    mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=jobs_api({"job-1": ["COMPLETED"]}, {"job-1": result("job-1", PAGES)})
    )

    parsed = make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert upload.call_count == 2 and parsed.usage.vendor_job_id == "job-1"
    assert fake_time.slept[0] == 7  # the wait the service asked for, before anything else


def test_500_then_success_looks_for_a_lost_job_before_creating_again(
    fake_time: FakeClock, mock: respx.MockRouter
) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(
        side_effect=[
            httpx.Response(500, json={"detail": "oops"}),
            httpx.Response(200, json=job("job-2", "PENDING")),
        ]
    )
    lookup = mock.get(PARSE).mock(
        return_value=httpx.Response(200, json={"items": [], "next_page_token": None})
    )
    mock.get(path__regex=r"^/api/v2/parse/job-2$").mock(
        side_effect=jobs_api({"job-2": ["COMPLETED"]}, {"job-2": result("job-2", PAGES)})
    )

    parsed = make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert create.call_count == 2 and lookup.call_count == 1
    assert "created_at_on_or_after" in lookup.calls.last.request.url.params
    assert parsed.usage.vendor_job_id == "job-2"


def test_a_job_whose_create_answer_was_lost_is_adopted_not_created_twice(
    fake_time: FakeClock, mock: respx.MockRouter
) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    tags: list[str] = []

    def create_then_time_out(request: httpx.Request) -> httpx.Response:
        tags.append(json.loads(request.content)["user_metadata"][SUBMISSION_TAG])
        raise httpx.ReadTimeout("the answer was lost", request=request)

    create = mock.post(PARSE).mock(side_effect=create_then_time_out)
    lookup = mock.get(PARSE).mock(
        side_effect=lambda request: httpx.Response(
            200, json={"items": [job("job-1", "RUNNING", user_metadata={SUBMISSION_TAG: tags[0]})]}
        )
    )
    mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=jobs_api({"job-1": ["COMPLETED"]}, {"job-1": result("job-1", PAGES)})
    )

    parsed = make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert create.call_count == 1 and lookup.call_count == 1
    assert parsed.usage.vendor_job_id == "job-1"


@pytest.mark.parametrize(("status", "words"), [(401, "API key was refused"), (402, "out of quota")])
def test_auth_and_quota_failures_stop_at_once_without_the_key(
    fake_time: FakeClock, mock: respx.MockRouter, status: int, words: str
) -> None:
    upload = mock.post(FILES).mock(return_value=httpx.Response(status, json={"detail": f"Invalid key {KEY}"}))

    with pytest.raises(VendorError) as caught:
        make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert upload.call_count == 1 and not fake_time.slept
    assert words in str(caught.value) and KEY not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_failed_job_is_confirmed_then_resubmitted_once(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    upload = mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-1", "job-2"))
    api = jobs_api(
        {"job-1": ["RUNNING", "FAILED"], "job-2": ["COMPLETED"]}, {"job-2": result("job-2", PAGES)}
    )
    first = mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(side_effect=api)
    mock.get(path__regex=r"^/api/v2/parse/job-2$").mock(side_effect=api)

    parsed = make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert upload.call_count == 1 and create.call_count == 2  # the uploaded file is parsed again
    assert json.loads(create.calls[1].request.content)["file_id"] == "file-1"
    assert first.call_count == 2  # read until the API itself said FAILED
    assert parsed.usage.vendor_job_id == "job-2" and parsed.attempted_job_ids == ["job-1", "job-2"]
    assert [a.status for a in parsed.attempts] == ["FAILED", "COMPLETED"]
    assert parsed.document.warnings[0] == "LlamaParse job job-1 ended FAILED (boom); resubmitted once"


def test_a_second_failure_is_never_resubmitted(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-1", "job-2", "job-3"))
    api = jobs_api({"job-1": ["FAILED"], "job-2": ["FAILED"]}, {})
    mock.get(path__regex=r"^/api/v2/parse/job-[12]$").mock(side_effect=api)

    with pytest.raises(VendorError, match="failed to parse twice"):
        make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert create.call_count == 2


def test_overdue_job_is_cancelled_confirmed_and_resubmitted(
    fake_time: FakeClock, mock: respx.MockRouter
) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-1", "job-2"))
    stuck = {"job-1": ["PENDING"], "job-2": ["COMPLETED"]}
    api = jobs_api(stuck, {"job-2": result("job-2", PAGES)})
    mock.get(path__regex=r"^/api/v2/parse/job-[12]$").mock(side_effect=api)

    def cancel(request: httpx.Request) -> httpx.Response:
        stuck["job-1"] = ["CANCELLED"]
        return httpx.Response(200, json=job("job-1", "CANCELLED"))

    cancelled = mock.post(f"{PARSE}/job-1/cancel").mock(side_effect=cancel)

    parsed = make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert cancelled.call_count == 1 and create.call_count == 2
    assert [(a.job_id, a.status) for a in parsed.attempts] == [("job-1", "CANCELLED"), ("job-2", "COMPLETED")]


def test_overdue_job_that_will_not_cancel_is_not_resubmitted(
    fake_time: FakeClock, mock: respx.MockRouter
) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-1", "job-2"))
    mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(side_effect=jobs_api({"job-1": ["RUNNING"]}, {}))
    mock.post(f"{PARSE}/job-1/cancel").mock(return_value=httpx.Response(200, json=job("job-1", "RUNNING")))

    with pytest.raises(RetriesExhausted, match="cancellation is unconfirmed"):
        make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert create.call_count == 1


def test_garbled_status_answer_is_retried(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    mock.post(PARSE).mock(side_effect=creates("job-1"))
    api = jobs_api({"job-1": ["COMPLETED"]}, {"job-1": result("job-1", PAGES)})
    garbled = httpx.Response(
        200, content=b'{"job": {"id": "job-1", "sta', headers={"content-type": "application/json"}
    )
    answers = iter([garbled])
    reads = mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=lambda r: next(answers, None) or api(r)
    )

    parsed = make_parser(fake_time).parse(PDF, filename="doc.pdf", media_type="application/pdf")

    assert parsed.usage.vendor_job_id == "job-1" and reads.call_count == 3


def test_fast_tier_reads_plain_text_pages(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    mock.post(PARSE).mock(side_effect=creates("job-1"))
    text = {
        "job": job("job-1", "COMPLETED", usage={"credits": 1.5}),
        "text": {"pages": [{"page_number": 1, "text": "# not a heading\n\nsecond paragraph"}]},
    }
    reads = mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=jobs_api({"job-1": ["COMPLETED"]}, {"job-1": text})
    )

    parsed = make_parser(fake_time, llamaparse_tier="fast").parse(
        PDF, filename="a.pdf", media_type="application/pdf"
    )

    assert reads.calls.last.request.url.params.get_list("expand") == ["text", "usage"]
    assert [(b.kind, b.text) for b in parsed.document.blocks] == [
        ("paragraph", "# not a heading"),
        ("paragraph", "second paragraph"),
    ]
    assert parsed.usage.credits == 2  # fractional credits round up: never under-count a charge


def test_every_request_has_a_timeout(fake_time: FakeClock) -> None:
    parser = make_parser(fake_time)
    assert parser._client.timeout.read == 2.0 and parser._client.max_retries == 0


# --- resuming the job an earlier delivery of the stage made -----------------------------------------


def test_each_job_is_told_as_soon_as_it_is_made(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    mock.post(FILES).mock(return_value=uploaded())
    mock.post(PARSE).mock(side_effect=creates("job-1", "job-2"))
    api = jobs_api({"job-1": ["FAILED"], "job-2": ["COMPLETED"]}, {"job-2": result("job-2", PAGES)})
    mock.get(path__regex=r"^/api/v2/parse/job-[12]$").mock(side_effect=api)
    told: list[Submission] = []

    make_parser(fake_time).parse(
        PDF, filename="doc.pdf", media_type="application/pdf", on_submitted=told.append
    )

    assert told == [Submission("job-1", "file-1", 1), Submission("job-2", "file-1", 2)]


def test_a_recorded_completed_job_is_read_not_made_again(
    fake_time: FakeClock, mock: respx.MockRouter
) -> None:
    upload = mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-2"))
    reads = mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=jobs_api({"job-1": ["COMPLETED"]}, {"job-1": result("job-1", PAGES)})
    )
    told: list[Submission] = []

    parsed = make_parser(fake_time).parse(
        PDF,
        filename="doc.pdf",
        media_type="application/pdf",
        resume=Submission("job-1", "file-1", 1),
        on_submitted=told.append,
    )

    assert upload.call_count == 0 and create.call_count == 0 and told == []
    assert [call.request.url.params.get_list("expand") for call in reads.calls] == [[], ["markdown", "usage"]]
    assert (parsed.usage.vendor_job_id, parsed.usage.credits) == ("job-1", 20)
    assert parsed.attempted_job_ids == ["job-1"] and not fake_time.slept  # nothing to wait for


def test_a_recorded_pending_job_is_waited_for(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    upload = mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-2"))
    mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        side_effect=jobs_api(
            {"job-1": ["RUNNING", "RUNNING", "COMPLETED"]}, {"job-1": result("job-1", PAGES)}
        )
    )

    parsed = make_parser(fake_time).parse(
        PDF, filename="doc.pdf", media_type="application/pdf", resume=Submission("job-1", "file-1", 1)
    )

    assert upload.call_count == 0 and create.call_count == 0
    assert parsed.usage.vendor_job_id == "job-1" and fake_time.slept  # polled until it completed


def test_a_recorded_failed_job_is_resubmitted_from_its_uploaded_file(
    fake_time: FakeClock, mock: respx.MockRouter
) -> None:
    upload = mock.post(FILES).mock(return_value=uploaded())
    create = mock.post(PARSE).mock(side_effect=creates("job-2"))
    api = jobs_api({"job-1": ["FAILED"], "job-2": ["COMPLETED"]}, {"job-2": result("job-2", PAGES)})
    mock.get(path__regex=r"^/api/v2/parse/job-[12]$").mock(side_effect=api)
    told: list[Submission] = []

    parsed = make_parser(fake_time).parse(
        PDF,
        filename="doc.pdf",
        media_type="application/pdf",
        resume=Submission("job-1", "file-7", 1),
        on_submitted=told.append,
    )

    assert upload.call_count == 0 and json.loads(create.calls.last.request.content)["file_id"] == "file-7"
    assert told == [Submission("job-2", "file-7", 2)]
    assert parsed.attempted_job_ids == ["job-1", "job-2"]
    assert parsed.document.warnings[0] == "LlamaParse job job-1 ended FAILED (boom); resubmitted once"


def test_a_recorded_second_failure_fails_the_document_without_a_third_job(
    fake_time: FakeClock, mock: respx.MockRouter
) -> None:
    create = mock.post(PARSE).mock(side_effect=creates("job-3"))
    mock.get(path__regex=r"^/api/v2/parse/job-2$").mock(side_effect=jobs_api({"job-2": ["FAILED"]}, {}))

    with pytest.raises(VendorError, match="failed to parse twice"):
        make_parser(fake_time).parse(
            PDF, filename="doc.pdf", media_type="application/pdf", resume=Submission("job-2", "file-1", 2)
        )

    assert create.call_count == 0


def test_a_job_and_file_the_api_forgot_are_made_again(fake_time: FakeClock, mock: respx.MockRouter) -> None:
    upload = mock.post(FILES).mock(return_value=httpx.Response(200, json={"id": "file-2", "name": "doc.pdf"}))
    gone = httpx.Response(404, json={"detail": "File not found"})
    create = mock.post(PARSE).mock(side_effect=[gone, httpx.Response(200, json=job("job-2", "PENDING"))])
    mock.get(path__regex=r"^/api/v2/parse/job-1$").mock(
        return_value=httpx.Response(404, json={"detail": "Job not found"})
    )
    mock.get(path__regex=r"^/api/v2/parse/job-2$").mock(
        side_effect=jobs_api({"job-2": ["COMPLETED"]}, {"job-2": result("job-2", PAGES)})
    )
    told: list[Submission] = []

    parsed = make_parser(fake_time).parse(
        PDF,
        filename="doc.pdf",
        media_type="application/pdf",
        resume=Submission("job-1", "file-1", 2),
        on_submitted=told.append,
    )

    assert [json.loads(call.request.content)["file_id"] for call in create.calls] == ["file-1", "file-2"]
    assert upload.call_count == 1 and told == [Submission("job-2", "file-2", 1)]  # a new round
    assert parsed.usage.vendor_job_id == "job-2"
