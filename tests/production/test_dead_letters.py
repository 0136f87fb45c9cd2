"""Dead letters: a message given up (its retries spent, or delivered too often because its worker kept
dying) fails its job and waits in the broker's dead-letter queue; nothing retries it on its own. The
worker's metrics count it, `ingest status --failed` lists it, and `ingest retry` replays it."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import psycopg
import pytest
import redis
from production_support import (
    documents_by_id,
    free_port,
    heal,
    job_of,
    max_deliveries,
    poison_document,
    run_cli,
    wait_until,
    worker_group,
    write_documents,
)
from prometheus_client.parser import text_string_to_metric_families

from ingest.config import Settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MAX_RETRIES = 1


def port_answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's metrics: (sample name, sorted labels) → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def failed_listing(env: dict[str, str]) -> list[dict[str, object]]:
    listed = run_cli(env, "status", "--failed", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_message_that_spends_its_retries_is_a_visible_dead_letter_and_replays(
    worker_env, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    env = worker_env(JOB_MAX_RETRIES=str(MAX_RETRIES), EMBED_BATCH_CHUNKS="1", WORKER_METRICS_PORT=str(port))
    conninfo = settings.database_url or ""
    poisoned, healthy = write_documents(tmp_path / "docs", 2, seed=43, words=320)
    assert "2 queued" in run_cli(env, "add", "--no-wait", str(poisoned), str(healthy)).stdout
    ids = documents_by_id(conninfo)
    poison_document(conninfo, ids[poisoned.name], "simulated disk fault")

    with worker_group(env, tmp_path / "worker.log") as worker:
        wait_until(
            lambda: (
                {job_of(conninfo, ids[p.name])["status"] for p in (poisoned, healthy)}
                == {"failed", "completed"}
            ),
            timeout=90,
            what=lambda: f"one document to fail and one to complete; worker:\n{worker.output()[-3000:]}",
        )
        failed_job = job_of(conninfo, ids[poisoned.name])["id"]
        # The metrics process starts once the worker process is ready, and may still be importing.
        wait_until(lambda: port_answers(port), timeout=60, what="the worker's metrics port to answer")
        metrics = scrape(port)
        queue = (("queue", "ingest"),)
        assert metrics[("ingest_dead_letters_total", (("actor", "embed_chunks"), *queue))] == 1
        assert metrics[("ingest_dead_letter_messages", queue)] == 1
        # At least the poisoned batch's retry; a batch still storing when the job failed meets its deleted
        # chunks, and its retry then ends quietly on the failed job.
        assert metrics[("ingest_stage_retries_total", (("stage", "embed"),))] >= MAX_RETRIES
        # Nothing of it is left to run: no message waits, now or later, and it was delivered no more often
        # than its retries allow.
        assert metrics[("ingest_queue_messages", queue)] == 0
        assert metrics[("ingest_queue_delayed_messages", queue)] == 0
        assert max_deliveries(conninfo) == MAX_RETRIES + 1

        listed = failed_listing(env)
        assert [(row["id"], row["filename"]) for row in listed] == [(failed_job, poisoned.name)]
        assert "simulated disk fault" in str(listed[0]["error"])
        plain = run_cli(env | {"COLUMNS": "400"}, "status", "--failed").stdout
        assert failed_job[:8] in plain and "1 failed jobs; run one again with `ingest retry JOB_ID`" in plain

        heal(conninfo)
        assert run_cli(env, "retry", failed_job).returncode == 0
        wait_until(
            lambda: job_of(conninfo, ids[poisoned.name])["status"] == "completed",
            timeout=90,
            what=lambda: f"the replayed job to complete; worker:\n{worker.output()[-3000:]}",
        )
    assert failed_listing(env) == []


def test_a_message_whose_worker_keeps_dying_is_given_up_without_running(
    worker_env, settings: Settings, shared_redis: redis.Redis, tmp_path: Path
) -> None:
    """A worker killed with its message does not count a retry, so Dramatiq alone would deliver it forever.
    The delivery count stands in for that many deaths (test_worker_sigkill shows a death brings it back)."""
    env = worker_env(JOB_MAX_RETRIES=str(MAX_RETRIES))
    conninfo = settings.database_url or ""
    doc = write_documents(tmp_path / "docs", 1, seed=47)[0]
    assert "queued" in run_cli(env, "add", "--no-wait", str(doc)).stdout
    queue = f"{env['INGEST_BROKER_NAMESPACE']}:ingest"
    # The queue holds the broker's own ids of its entries; the message (and its Dramatiq id) is in a hash.
    [entry] = shared_redis.lrange(queue, 0, -1)
    message_id = json.loads(shared_redis.hget(f"{queue}.msgs", entry))["message_id"]
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            "INSERT INTO message_deliveries (message_id, deliveries) VALUES (%s, %s)",
            (message_id, MAX_RETRIES + 1),
        )
    doc_id = documents_by_id(conninfo)[doc.name]

    with worker_group(env, tmp_path / "worker.log") as worker:
        job = wait_until(
            lambda: (found := job_of(conninfo, doc_id))["status"] == "failed" and found,
            timeout=60,
            what=lambda: f"the job to be given up; worker:\n{worker.output()[-3000:]}",
        )
    assert "gave up after 2 deliveries" in str(job["error"])
    with psycopg.connect(conninfo) as conn:
        attempts = conn.execute("SELECT attempts FROM jobs WHERE id = %s", (job["id"],)).fetchone()[0]
    assert attempts == 0  # the stage never ran
    # In the dead-letter queue, and nowhere else: nothing will deliver it again.
    assert shared_redis.zrange(f"{queue}.XQ", 0, -1) == [entry]
    assert shared_redis.llen(queue) == 0
    assert [row["id"] for row in failed_listing(env)] == [job["id"]]
