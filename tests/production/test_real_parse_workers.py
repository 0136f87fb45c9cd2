"""Both services real (the official SDKs against the one-port stand-ins) through a separate `ingest worker`
process over Redis: every document completes, parsed by one LlamaParse job, with one parse in the ledger,
and the ledger is what the stand-ins billed. Three ways of learning that a parse job has ended:

- polling (no INGEST_PUBLIC_URL);
- webhooks: the stand-in POSTs each job's event to an `ingest serve` process, which wakes the worker
  through the Redis list of `router.llamaparse.signal`;
- webhooks asked for but never received (INGEST_PUBLIC_URL where nothing listens): the worker waits on
  the Redis signal until its job deadline, longer than redis-py's 5 s socket timeout, and then looks at
  the job itself. Such a wait once failed with `redis.TimeoutError` after 5 s, and each retry of the
  stage made a new LlamaParse job while the documents stayed `running`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from production_support import (
    INGEST,
    SAMPLES,
    all_jobs_final,
    assert_completed_once,
    free_port,
    job_states,
    json_lines,
    run_cli,
    set_modes,
    wait_until,
    worker_group,
)

from costs.prices import price_table
from ingest.config import Settings
from mocks.llamaparse_jobs import StandinState

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SECRET = "whsec-test-llamaparse-webhooks"
# A text, a markdown, an HTML and a DOCX sample: every kind of page the stand-in renders but PDF's.
DOCUMENTS = (
    "Apache-2.0.txt",
    "docker-plugins-volume.md",
    "sqlite-whentouse.html",
    "carroll-lookingglass.docx",
)


@contextmanager
def api_process(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`ingest serve` on a free loopback port (it only enqueues: the broker is Redis); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [INGEST, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "INGEST_PUBLIC_URL": url},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def live() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"ingest serve exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/health/live", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(live, timeout=60, what="ingest serve to answer")
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def ingest_through_a_worker(env: dict[str, str], settings: Settings, standins: object, tmp_path: Path) -> str:
    """Add the documents, run one worker process (2 threads) until they have all ended; its log."""
    conninfo = settings.database_url or ""
    added = run_cli(env, "add", "--no-wait", *(str(SAMPLES / name) for name in DOCUMENTS))
    assert f"{len(DOCUMENTS)} queued" in added.stdout, added.stdout + added.stderr
    with worker_group(env, tmp_path / "worker.log", processes=1, threads=2) as worker:
        wait_until(
            lambda: all_jobs_final(conninfo, len(DOCUMENTS)),
            timeout=150,
            what=lambda: (
                f"every document to end ({job_states(conninfo)}); worker:\n{worker.output()[-4000:]}"
            ),
        )
        log = worker.output()
    assert job_states(conninfo) == {"completed": len(DOCUMENTS)}, log[-4000:]
    return log


@pytest.fixture
def assert_each_parsed_once(
    llamaparse_records: Callable[[object], StandinState],
    assert_ledger_is_what_the_standins_billed: Callable[..., None],
) -> Callable[[Settings, object, str], None]:
    """`assert_each_parsed_once(settings, standins, log)`: completed once each (one parse in the ledger per
    document), one LlamaParse job per document, our ledger what the stand-ins billed, and no stage failed on
    the way."""

    def check(settings: Settings, standins: object, log: str) -> None:
        conninfo = settings.database_url or ""
        assert_completed_once(conninfo)
        jobs = list(llamaparse_records(standins).jobs.values())
        # A stage run again would have made a new job: one each means no parse failed and was retried.
        assert sorted(job.file.name for job in jobs) == sorted(DOCUMENTS), [
            (j.file.name, j.status) for j in jobs
        ]
        assert {job.status for job in jobs} == {"COMPLETED"}
        with psycopg.connect(conninfo) as conn:
            docs = [row[0] for row in conn.execute("SELECT id FROM documents")]
        assert_ledger_is_what_the_standins_billed(
            conninfo, standins, docs, price_table(settings), settings.openai_embedding_model
        )
        lines = json_lines(log)
        failed = [
            line for line in lines if str(line.get("event", "")).startswith("Failed to process message")
        ]
        assert not failed, failed[0]
        assert not [line for line in lines if line.get("event") == "llamaparse_signal_unavailable"]
        created = [line for line in lines if line.get("event") == "llamaparse_job_created"]
        assert len(created) == len(DOCUMENTS)

    return check


def test_polling(
    standins: object,
    worker_env,
    settings: Settings,
    tmp_path: Path,
    llamaparse_records: Callable[[object], StandinState],
    assert_each_parsed_once: Callable[[Settings, object, str], None],
) -> None:
    set_modes(settings, llamaparse="real", openai="real")
    env = worker_env()
    log = ingest_through_a_worker(env, settings, standins, tmp_path)
    assert_each_parsed_once(settings, standins, log)
    assert not llamaparse_records(standins).deliveries  # no webhook was asked for
    assert {
        line.get("webhooks") for line in json_lines(log) if line.get("event") == "llamaparse_job_created"
    } == {False}


def test_webhooks_through_the_api(
    standins: object,
    worker_env,
    settings: Settings,
    tmp_path: Path,
    llamaparse_records: Callable[[object], StandinState],
    assert_each_parsed_once: Callable[[Settings, object, str], None],
) -> None:
    set_modes(settings, llamaparse="real", openai="real")
    api_env = worker_env(LLAMAPARSE_WEBHOOK_SECRET=SECRET)
    with api_process(api_env, tmp_path / "api.log") as public_url:
        env = worker_env(PUBLIC_URL=public_url, LLAMAPARSE_WEBHOOK_SECRET=SECRET)
        log = ingest_through_a_worker(env, settings, standins, tmp_path)
    assert_each_parsed_once(settings, standins, log)
    # Each job's end was delivered to the API, which accepted it (and woke the worker through Redis).
    ended = {
        d.job_id
        for d in llamaparse_records(standins).deliveries
        if d.event_type == "parse.success" and d.status_code == 200
    }
    assert ended == set(llamaparse_records(standins).jobs)
    api_log = (tmp_path / "api.log").read_text(errors="replace")
    assert api_log.count('"llamaparse_webhook"') >= len(DOCUMENTS), api_log[-3000:]


def test_webhooks_that_never_arrive(
    standins: object,
    worker_env,
    settings: Settings,
    tmp_path: Path,
    llamaparse_records: Callable[[object], StandinState],
    assert_each_parsed_once: Callable[[Settings, object, str], None],
) -> None:
    """Nothing listens at the public URL: every wait runs to the job deadline (a third of the 20 s stage
    limit here, past redis-py's 5 s socket timeout), then the worker looks at the job and finds it done."""
    set_modes(settings, llamaparse="real", openai="real")
    env = worker_env(PUBLIC_URL=f"http://127.0.0.1:{free_port()}", LLAMAPARSE_WEBHOOK_SECRET=SECRET)
    log = ingest_through_a_worker(env, settings, standins, tmp_path)
    assert_each_parsed_once(settings, standins, log)
    deliveries = llamaparse_records(standins).deliveries
    assert deliveries and all(d.status_code is None for d in deliveries)  # asked for, never received
