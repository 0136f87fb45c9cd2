"""The LlamaParse stand-in's jobs: files, the job life cycle, charges and webhook deliveries.

A job is PENDING when created, RUNNING after `job_delay_s`, then COMPLETED or FAILED (or CANCELLED
when asked). Parsing is real, by the project's own extractor: a PDF gives one markdown page per page;
other formats give pages of about 3,000 characters, split between blocks (the mock parser bills the
same size of page). A completed job is charged pages times its tier's credits.

At each status change a job POSTs the thin event `{event_id, event_type, timestamp, data: {job_id}}` to
each of its webhook configurations that wants that event (`parse.pending`, `parse.running`,
`parse.success`, `parse.error`, `parse.cancelled`; all of them when it names none), signed
`LC-Signature: sha256=<hex>` with the configuration's secret (or the app's), retried on failure.
`webhook_output_format` "json" sends the object; the vendor's default, "string", a JSON string of it.

`LlamaParseFaults` makes jobs misbehave, reproducibly for a seed: files whose first job never ends or
fails, files that always fail, events lost or delivered twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import httpx

from ingest.errors import IngestError
from ingest.formats import extract
from ingest.parsed import Block
from mocks.faults import FaultInjector, FaultPlan, draw
from router.llamaparse.markdown import blocks_to_markdown, paginate
from router.llamaparse.webhook import SIGNATURE_HEADER, event_body, sign
from router.parser_mock import CHARS_PER_PAGE

# What the vendor charges per page (its pricing page). Kept apart from our price table on purpose: a
# drift between the two then shows as reported credits that differ from the estimate.
CREDITS_PER_PAGE = {"fast": 1, "cost_effective": 3, "agentic": 10, "agentic_plus": 45}
PROJECT_ID = "standin-project"
JOB_HEADER = "x-mock-llamaparse"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
_EVENTS = {"PENDING": "parse.pending", "RUNNING": "parse.running", "COMPLETED": "parse.success"}
_EVENTS |= {"FAILED": "parse.error", "CANCELLED": "parse.cancelled"}
_DELIVERY_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class LlamaParseFaults:
    """Job-level misbehaviour. `*_first` hit a file's first job only, so a resubmission succeeds."""

    job_delay_s: float = 0.05  # from creation to RUNNING (and on to the result)
    stuck_first: float = 0  # the job never leaves PENDING (until cancelled)
    fail_first: float = 0  # the job ends FAILED
    fail_always: float = 0  # every job of the file ends FAILED
    webhook_lost: float = 0  # the job's events are never delivered
    webhook_twice: float = 0  # each of the job's events is delivered twice (same event_id)
    seed: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LlamaParseFaults:
        env = os.environ if environ is None else environ
        prefix = "MOCKS_LLAMAPARSE_"
        return cls()._with(
            {f.name: env[prefix + f.name.upper()] for f in fields(cls) if prefix + f.name.upper() in env}
        )

    def merged_with_headers(self, headers: Mapping[str, str]) -> LlamaParseFaults:
        raw = headers.get(JOB_HEADER, "")
        pairs = [item.partition("=") for item in raw.split(",") if item.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError(f"X-Mock-LlamaParse: expected name=value pairs, got {raw!r}")
        return self._with({name.strip(): value.strip() for name, _, value in pairs})

    def _with(self, values: Mapping[str, str]) -> LlamaParseFaults:
        known = {f.name: f.type for f in fields(self)}
        if unknown := set(values) - set(known):
            raise ValueError(f"unknown LlamaParse fault setting(s): {', '.join(sorted(unknown))}")
        # Fields chosen by name at run time: typed by the check above, not statically.
        parsed: dict[str, Any] = {k: int(v) if known[k] == "int" else float(v) for k, v in values.items()}
        return replace(self, **parsed)

    def hits(self, name: str, n: int) -> bool:
        return draw(self.seed, f"llamaparse:{name}", n) < getattr(self, name)


@dataclass(slots=True)
class StoredFile:
    id: str
    name: str
    data: bytes
    seq: int  # upload order: the draw index of its faults
    jobs: int = 0


@dataclass(slots=True)
class Job:
    id: str
    file: StoredFile
    tier: str
    version: str
    webhooks: list[dict[str, Any]]
    user_metadata: dict[str, str] | None
    faults: LlamaParseFaults
    seq: int
    stuck: bool
    fail: bool
    status: str = "PENDING"
    error_message: str | None = None
    pages: list[str] = field(default_factory=list)  # markdown per page
    texts: list[str] = field(default_factory=list)  # plain text per page
    credits: float | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_json(self, *, usage: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "project_id": PROJECT_ID,
            "status": self.status,
            "name": self.file.name,
            "tier": self.tier,
            "error_message": self.error_message,
            "user_metadata": self.user_metadata,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
        if usage:
            body["usage"] = {"credits": self.credits}
        return body


@dataclass(slots=True)
class Delivery:
    job_id: str
    event_id: str
    event_type: str
    url: str
    status_code: int | None
    error: str | None = None


@dataclass
class StandinState:
    """What tests read: every file, job and webhook delivery, and what was charged."""

    plan: FaultPlan
    faults: LlamaParseFaults
    webhook_secret: str | None
    api_key: str | None
    injector: FaultInjector
    files: dict[str, StoredFile] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    pages_charged: int = 0
    credits_charged: float = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def render_pages(data: bytes, filename: str) -> tuple[list[str], list[str]]:
    """(markdown pages, plain-text pages) of a document, by the project's own extractor."""
    document = extract(data, filename=filename)
    if document.pages:
        pages: list[list[Block]] = [[] for _ in range(document.pages)]
        for block in document.blocks:
            pages[(block.page or 1) - 1].append(block)
    else:
        pages = paginate(document.blocks, chars_per_page=CHARS_PER_PAGE)
    return (
        [blocks_to_markdown(blocks) for blocks in pages],
        ["\n\n".join(block.text for block in blocks) for blocks in pages],
    )


def store_file(state: StandinState, name: str, data: bytes) -> StoredFile:
    stored = StoredFile(f"file-{uuid.uuid4().hex[:16]}", name, data, seq=len(state.files))
    state.files[stored.id] = stored
    return stored


def start_job(
    state: StandinState,
    stored: StoredFile,
    *,
    tier: str,
    version: str,
    webhooks: list[dict[str, Any]],
    user_metadata: dict[str, str] | None,
    faults: LlamaParseFaults,
) -> Job:
    """A new PENDING job, run in the background (needs the running event loop)."""
    first = stored.jobs == 0
    stored.jobs += 1
    job = Job(
        id=f"job-{uuid.uuid4().hex[:16]}",
        file=stored,
        tier=tier,
        version=version,
        webhooks=webhooks,
        user_metadata=user_metadata,
        faults=faults,
        seq=len(state.jobs),
        stuck=first and faults.hits("stuck_first", stored.seq),
        fail=faults.hits("fail_always", stored.seq) or (first and faults.hits("fail_first", stored.seq)),
    )
    state.jobs[job.id] = job
    _notify(state, job)
    _spawn(state, _run(state, job))
    return job


def _spawn(state: StandinState, work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(work)
    state.tasks.add(task)  # held: the loop keeps only weak references to tasks
    task.add_done_callback(state.tasks.discard)


async def _run(state: StandinState, job: Job) -> None:
    await asyncio.sleep(job.faults.job_delay_s)
    if job.status != "PENDING" or job.stuck:
        return  # cancelled meanwhile, or never to finish
    set_status(state, job, "RUNNING")
    if job.fail:
        set_status(state, job, "FAILED", "Parsing failed (injected fault)")
        return
    try:
        pages, texts = await asyncio.to_thread(render_pages, job.file.data, job.file.name)
    except IngestError as exc:
        set_status(state, job, "FAILED", str(exc))
        return
    if job.status != "RUNNING":
        return  # cancelled while parsing: nothing is charged
    job.pages, job.texts = pages, texts
    job.credits = float(len(pages) * CREDITS_PER_PAGE[job.tier])
    state.pages_charged += len(pages)
    state.credits_charged += job.credits
    set_status(state, job, "COMPLETED")


def set_status(state: StandinState, job: Job, status: str, error: str | None = None) -> None:
    job.status, job.error_message, job.updated_at = status, error, datetime.now(UTC)
    _notify(state, job)


def _notify(state: StandinState, job: Job) -> None:
    """Deliver the event of the job's current status to every configuration that wants it."""
    if not job.webhooks or job.faults.hits("webhook_lost", job.seq):
        return
    event_type = _EVENTS[job.status]
    copies = 2 if job.faults.hits("webhook_twice", job.seq) else 1
    for config in job.webhooks:
        if config["webhook_events"] is not None and event_type not in config["webhook_events"]:
            continue
        event_id = f"evt-{uuid.uuid4().hex[:16]}"
        body = event_body(event_id, event_type, job.id, timestamp=datetime.now(UTC))
        if config["webhook_output_format"] != "json":  # the vendor's default: the event as a JSON string
            body = json.dumps(body.decode()).encode()
        custom = {name: str(value) for name, value in (config["webhook_headers"] or {}).items()}
        headers = {"content-type": "application/json", **custom}
        secret = config["webhook_signing_secret"] or state.webhook_secret
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        for _ in range(copies):
            delivery = Delivery(job.id, event_id, event_type, config["webhook_url"], None)
            _spawn(state, _deliver(state, delivery, body, headers))


async def _deliver(state: StandinState, delivery: Delivery, body: bytes, headers: dict[str, str]) -> None:
    """POST one event, retried with backoff on failure like the real service; every attempt recorded."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        for attempt in range(_DELIVERY_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.05 * 2**attempt)
            try:
                response = await client.post(delivery.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                state.deliveries.append(replace(delivery, error=type(exc).__name__))
                continue
            state.deliveries.append(replace(delivery, status_code=response.status_code))
            if response.status_code < 500:  # delivered, or refused for good
                return
