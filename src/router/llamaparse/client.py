"""LlamaParse (Parse API v2) through the official `llama-cloud` SDK, as a `Parser`.

One parse, in SDK 2.19 calls:
1. `files.create(file=..., purpose="parse")`            POST /api/v1/beta/files
2. `parsing.create(tier, version, file_id, ...)`        POST /api/v2/parse
3. wait: a webhook wake-up (`waiter`) or a poll, then   GET  /api/v2/parse/{id}
4. `parsing.get(id, expand=["markdown", "usage"])`      GET  /api/v2/parse/{id}?expand=...
   (the `fast` tier has no markdown: it is read as plain text, `expand=["text", "usage"]`)

Retries are ours, not the SDK's (`max_retries=0`): `router.backoff.VendorRetry` shares 429 cooldowns
between workers and classifies failures like every other vendor client. Every request has a timeout.

A job is given `job_deadline_s`. Past it, it is looked at once more; a job still pending is cancelled,
and only once the API confirms it FAILED or CANCELLED is the file submitted again, once. A job that
fails on its own is resubmitted the same way. A create whose answer was lost (timeout, 5xx, garbled
body) may still have made a job: before trying again we look for it by a tag in `user_metadata`, so
one document is never charged twice for one submission.

Every job made is told to the caller (`on_submitted`), who records it with the ingest job; a later
delivery of the stage passes it back (`resume`) and the job it already paid for serves: a pending one is
waited for, a completed one is read, and only one confirmed FAILED or CANCELLED, or unknown to the API,
is replaced (`router.llamaparse.resume` decides, a pure function).

The base URL (region) is `LLAMA_CLOUD_BASE_URL`, e.g. https://api.cloud.eu.llamaindex.ai for the EU.

HTTP client and tests: llama-cloud sends through plain `httpx` (its `_base_client` wraps an
`httpx.Client`), so respx intercepts the SDK's own default client; the unit tests need no injection.
`http_client` still accepts any `httpx.Client` (proxies, custom transports).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import httpx
import structlog
from llama_cloud import LlamaCloud, omit
from llama_cloud.types.parsing_create_params import WebhookConfiguration

from ingest.config import Settings
from ingest.errors import ServiceUnavailable, VendorError
from ingest.formats import Limits
from ingest.parsed import ParsedDocument, Submission
from router.backoff import Cooldown, RetriesExhausted, RetryPolicy, VendorRetry
from router.llamaparse.markdown import pages_to_document
from router.llamaparse.resume import FAILED as _FAILED
from router.llamaparse.resume import PENDING as _PENDING
from router.llamaparse.resume import JobAttempt, Step, described, gave_up, next_step, resumed_jobs
from router.llamaparse.webhook import TERMINAL_EVENTS
from router.protocols import OnSubmitted, ParseResult, ParseUsage
from router.vendor_errors import ErrorClass, MalformedResponse, classify, describe, status_of, vendor_failure

log = structlog.get_logger(__name__)

SERVICE = "llamaparse"
WEBHOOK_PATH = "/v1/webhooks/llamaparse"
SUBMISSION_TAG = "ingest_submission"  # user_metadata key that finds a job whose create answer was lost
_STATUSES = _PENDING | _FAILED | {"COMPLETED"}
# The vendor's and our clocks differ: a lost job is looked for this far before we asked for it.
_CLOCK_SKEW = timedelta(minutes=5)

T = TypeVar("T")
Waiter = Callable[[str, float], bool]  # (vendor job id, timeout s) -> True when an event arrived


@dataclass(slots=True)
class LlamaParseResult(ParseResult):
    attempts: tuple[JobAttempt, ...] = ()  # every job of this parse, in order; the last one succeeded

    @property
    def attempted_job_ids(self) -> list[str]:
        return [attempt.job_id for attempt in self.attempts]


@dataclass(frozen=True, slots=True)
class _Job:
    id: str
    status: str
    error: str | None
    credits: float | None


def _job(raw: object) -> _Job:
    """A job from any SDK answer that carries one; MalformedResponse (retried) when it does not."""
    job = getattr(raw, "job", raw)  # parsing.get wraps the job; create/cancel/list answer it bare
    job_id, status = getattr(job, "id", None), getattr(job, "status", None)
    if not isinstance(job_id, str) or not job_id or status not in _STATUSES:
        raise MalformedResponse(f"LlamaParse answered without a usable job (status {status!r})")
    usage = getattr(job, "usage", None)
    credits = getattr(usage, "credits", None)
    error = getattr(job, "error_message", None)
    return _Job(job_id, status, error if isinstance(error, str) else None, credits)


class LlamaParseParser:
    """Thread-safe: one instance serves every worker thread of a process."""

    resumes_jobs = True  # takes `resume=` and `on_submitted=` (router.protocols.Parser)

    def __init__(
        self,
        settings: Settings,
        *,
        waiter: Waiter | None = None,
        http_client: httpx.Client | None = None,
        policy: RetryPolicy | None = None,
        cooldown: Cooldown | None = None,
        poll_interval_s: float | None = None,
        max_poll_interval_s: float | None = None,
        webhook_fallback_s: float = 60.0,
        job_deadline_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = settings.llama_cloud_api_key.get_secret_value() if settings.llama_cloud_api_key else ""
        if not key:
            raise ServiceUnavailable(f"{SERVICE}: LLAMA_CLOUD_API_KEY is not set")
        self.tier = settings.llamaparse_tier
        self.version = settings.llamaparse_version
        self.name = f"{SERVICE}:{self.tier}"
        self._limits = Limits.from_settings(settings)
        policy = policy or RetryPolicy.from_settings(settings)
        self._client = LlamaCloud(
            api_key=key,
            base_url=settings.llama_cloud_base_url,  # None: the SDK reads LLAMA_CLOUD_BASE_URL itself
            max_retries=0,
            timeout=httpx.Timeout(policy.timeout_s, connect=min(10.0, policy.timeout_s)),
            http_client=http_client,
        )
        self._retry = VendorRetry(
            SERVICE, policy, cooldown or Cooldown.from_settings(settings), sleep=sleep, secrets=(key,)
        )
        self._secrets = (key,)
        self._webhooks = _webhook_configurations(settings)
        self._waiter = waiter if waiter is not None else self._sleep_wait
        self._sleep = sleep
        self._clock = clock
        # With webhooks and a waiter an event normally ends each wait; the fallback bounds what a lost
        # one costs. Without a waiter nothing can wake us, so we poll.
        poll_interval_s = poll_interval_s or settings.llamaparse_poll_interval_s
        self._first_interval = (
            webhook_fallback_s if self._webhooks and waiter is not None else poll_interval_s
        )
        self._max_interval = max(
            max_poll_interval_s or settings.llamaparse_max_poll_interval_s, self._first_interval
        )
        # Two waits, a cancellation and a resubmission must fit in one stage's hard limit.
        longest = settings.job_time_limit_s / 3
        self.job_deadline_s = job_deadline_s or min(settings.llamaparse_job_deadline_s or longest, longest)

    # --- the Parser protocol ------------------------------------------------------------------------

    def parse(
        self,
        data: bytes,
        *,
        filename: str,
        media_type: str,
        resume: Submission | None = None,
        on_submitted: OnSubmitted | None = None,
    ) -> LlamaParseResult:
        """Follow the document's jobs until one completes (`router.llamaparse.resume` decides each step).

        `resume`: the job an earlier delivery made; it is looked at first and, pending or completed, it
        serves: no upload, no new job. `on_submitted`: told each new job as soon as it exists.
        """
        attempts: list[JobAttempt] = []  # the jobs seen ended, in order
        warnings: list[str] = []
        file_id, recorded_file = None, False
        made = 0  # jobs of this round so far
        job: _Job | None = None  # the round's latest job, as last seen
        if resume is not None:
            job = self._look_up(resume.job_id)
            status = job.status if job else None
            file_id, recorded_file = resume.file_id, resume.file_id is not None
            made = resumed_jobs(resume.jobs, status)
            log.info("llamaparse_job_resumed", job_id=resume.job_id, status=status or "UNKNOWN", jobs=made)
            if job is not None and job.status not in _PENDING:
                attempts.append(JobAttempt(job.id, job.status, job.error))
        while (step := next_step(made, job.status if job else None)) is not Step.FETCH:
            if step is Step.GIVE_UP:
                raise gave_up(attempts, self.job_deadline_s)
            if step is Step.WAIT:
                assert job is not None
                job = self._settle(job.id)
                if job.status not in _PENDING:
                    attempts.append(JobAttempt(job.id, job.status, job.error))
                continue
            if made and attempts and (ended := attempts[-1]).status in _FAILED:
                warnings.append(f"LlamaParse job {described(ended)}; resubmitted once")
                log.warning(
                    "llamaparse_resubmit", job_id=ended.job_id, status=ended.status, error=ended.error
                )
            job_id, file_id = self._submit_file(file_id, recorded_file, data, filename, media_type)
            recorded_file = False
            made += 1
            if on_submitted is not None:
                on_submitted(Submission(job_id, file_id, made))
            job = _Job(job_id, "PENDING", None, None)
        assert job is not None  # a FETCH is of a job seen COMPLETED
        document, credits = self._result(job.id, media_type)
        document.warnings[:0] = warnings
        usage = ParseUsage(
            pages=document.pages or 0,
            credits=math.ceil(credits) if credits else 0,  # never under-count what the vendor billed
            vendor_job_id=job.id,
            simulated=False,
        )
        return LlamaParseResult(document, usage, self.name, tuple(attempts))

    def close(self) -> None:
        self._client.close()

    # --- steps --------------------------------------------------------------------------------------

    def _upload(self, data: bytes, filename: str, media_type: str) -> str:
        # A large file needs longer than one ordinary request: allow for a slow 1 MB/s uplink.
        timeout = self._retry.policy.timeout_s + len(data) / 1_000_000

        def upload() -> str:
            answer = self._client.files.create(
                file=(filename, data, media_type), purpose="parse", timeout=timeout
            )
            file_id = getattr(answer, "id", None)
            if not isinstance(file_id, str) or not file_id:
                raise MalformedResponse("LlamaParse answered an upload without a file id")
            return file_id

        return self._call(upload)

    def _submit_file(
        self, file_id: str | None, recorded: bool, data: bytes, filename: str, media_type: str
    ) -> tuple[str, str]:
        """A new job for the file, uploaded unless it already is; (job id, file id). A recorded upload
        the API no longer knows (files expire) is uploaded again."""
        if file_id is not None:
            try:
                return self._submit(file_id), file_id
            except VendorError as refused:
                if not recorded or status_of(refused.__context__ or refused) != 404:
                    raise
                log.info("llamaparse_file_gone", file_id=file_id)
        file_id = self._upload(data, filename, media_type)
        return self._submit(file_id), file_id

    def _submit(self, file_id: str) -> str:
        tag = uuid.uuid4().hex
        since = datetime.now(UTC) - _CLOCK_SKEW
        lost_answer = False

        def create() -> str:
            nonlocal lost_answer
            if lost_answer and (found := self._find_submitted(tag, since)) is not None:
                return found
            try:
                return _job(
                    self._client.parsing.create(
                        tier=self.tier,
                        version=self.version,
                        file_id=file_id,
                        user_metadata={SUBMISSION_TAG: tag},
                        webhook_configurations=self._webhooks or omit,
                    )
                ).id
            except Exception as exc:
                # A 429 or a refusal made no job; a timeout, 5xx or garbled answer may have made one.
                lost_answer = lost_answer or classify(exc) is ErrorClass.TRANSIENT
                raise

        job_id = self._call(create)
        log.info(
            "llamaparse_job_created",
            job_id=job_id,
            file_id=file_id,
            tier=self.tier,
            webhooks=bool(self._webhooks),
        )
        return job_id

    def _find_submitted(self, tag: str, since: datetime) -> str | None:
        page = self._client.parsing.list(created_at_on_or_after=since, page_size=100)
        for item in getattr(page, "items", None) or []:
            if (getattr(item, "user_metadata", None) or {}).get(SUBMISSION_TAG) == tag:
                job_id = _job(item).id
                log.info("llamaparse_job_recovered", job_id=job_id)
                return job_id
        return None

    def _settle(self, job_id: str) -> _Job:
        """The job once it has ended: COMPLETED, FAILED, or CANCELLED (by the vendor or, when overdue, by us)."""
        deadline = self._clock() + self.job_deadline_s
        interval = self._first_interval
        while (left := deadline - self._clock()) > 0:
            woke = self._waiter(job_id, min(interval, left))
            job = self._status(job_id)
            if job.status not in _PENDING:
                return job
            interval = interval if woke else min(interval * 2, self._max_interval)
        return self._stop_overdue(job_id)

    def _stop_overdue(self, job_id: str) -> _Job:
        job = self._status(job_id)  # looked at again: a lost webhook only ever delays
        if job.status not in _PENDING:
            return job
        log.warning("llamaparse_job_overdue", job_id=job_id, deadline_s=self.job_deadline_s)
        try:
            self._retry.call(lambda: self._client.parsing.cancel(job_id))
        except Exception as exc:  # noqa: BLE001 - best effort: the read below decides
            # E.g. refused because the job ended meanwhile. Only the job's state below decides; a lasting
            # failure (a bad key) fails that read too.
            log.warning("llamaparse_cancel_failed", job_id=job_id, error=describe(exc, self._secrets))
        job = self._status(job_id)  # what the job is now, not what the cancel answered
        if job.status in _PENDING:
            raise RetriesExhausted(
                SERVICE,
                ErrorClass.TRANSIENT,
                1,
                f"job {job_id} is overdue and its cancellation is unconfirmed",
            )
        return job

    def _look_up(self, job_id: str) -> _Job | None:
        """The job as the API sees it now; None when the API does not know it (404)."""

        def read() -> _Job | None:
            try:
                return _job(self._client.parsing.get(job_id))
            except Exception as exc:
                if status_of(exc) == 404:
                    return None
                raise

        return self._call(read)

    def _status(self, job_id: str) -> _Job:
        return self._call(lambda: _job(self._client.parsing.get(job_id)))

    def _result(self, job_id: str, media_type: str) -> tuple[ParsedDocument, float | None]:
        plain = self.tier == "fast"  # the fast tier returns no markdown

        def fetch() -> tuple[ParsedDocument, float | None]:
            answer = self._client.parsing.get(job_id, expand=["text" if plain else "markdown", "usage"])
            job = _job(answer)
            content = getattr(answer, "text" if plain else "markdown", None)
            pages = getattr(content, "pages", None)
            if job.status != "COMPLETED" or not isinstance(pages, list):
                raise MalformedResponse(f"LlamaParse job {job_id} answered its result without pages")
            return pages_to_document(pages, media_type, plain, self._limits.max_chars), job.credits

        return self._call(fetch)

    # --- plumbing -----------------------------------------------------------------------------------

    def _sleep_wait(self, job_id: str, timeout_s: float) -> bool:
        self._sleep(timeout_s)
        return False

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return self._retry.call(fn)
        except RetriesExhausted:
            raise
        except Exception as exc:
            if classify(exc) is ErrorClass.UNKNOWN:
                raise  # our own bug, not the vendor's answer
            # `from None`: the SDK error holds the request, and the request holds the key.
            raise vendor_failure(SERVICE, exc, self._secrets) from None


def _webhook_configurations(settings: Settings) -> list[WebhookConfiguration]:
    """The job's webhook entry, when the vendor can reach us and we can verify what it sends."""
    secret = (
        settings.llamaparse_webhook_secret.get_secret_value() if settings.llamaparse_webhook_secret else ""
    )
    if not settings.public_url:
        return []
    if not secret:
        # Our endpoint refuses every unsigned delivery, so asking for them would only add traffic.
        log.warning("llamaparse_webhooks_off", reason="INGEST_PUBLIC_URL is set but no webhook secret")
        return []
    return [
        WebhookConfiguration(
            webhook_url=settings.public_url.rstrip("/") + WEBHOOK_PATH,
            webhook_events=list(TERMINAL_EVENTS),
            webhook_signing_secret=secret,
            webhook_output_format="json",
        )
    ]
