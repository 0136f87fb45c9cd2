"""A poison document, one whose every attempt fails, ends `failed` after INGEST_JOB_MAX_RETRIES retries,
with its one-line error in `ingest status` and `GET /v1/jobs/{id}`; nothing of it stays searchable, and
once the fault is gone `ingest retry` runs it again to completion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from production_support import (
    documents_by_id,
    heal,
    job_of,
    max_deliveries,
    poison_document,
    run_cli,
    wait_until,
    worker_group,
    write_documents,
)

from ingest.api.app import create_app
from ingest.config import Settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MAX_RETRIES = 2
FAULT = "could not write the chunk's vector: simulated disk fault"


def search_hits(env: dict[str, str], query: str) -> list[dict[str, object]]:
    found = run_cli(env, "search", query, "--json", "--user", "ada")
    assert found.returncode == 0, found.stderr
    return json.loads(found.stdout)["results"]


def test_a_poison_document_fails_visibly_leaves_nothing_searchable_and_retries(
    worker_env, settings: Settings, tmp_path: Path
) -> None:
    # One chunk per embedding message: the second meets the fault, the others are stored.
    env = worker_env(JOB_MAX_RETRIES=str(MAX_RETRIES), EMBED_BATCH_CHUNKS="1")
    conninfo = settings.database_url or ""
    doc = write_documents(tmp_path / "docs", 1, seed=41, words=320)[0]
    query = " ".join(doc.read_text().split()[6:30])  # words of the document itself
    assert "queued" in run_cli(env, "add", "--no-wait", "--user", "ada", str(doc)).stdout
    doc_id = documents_by_id(conninfo)[doc.name]
    poison_document(conninfo, doc_id, FAULT)

    with worker_group(env, tmp_path / "worker.log") as worker:
        failed = wait_until(
            lambda: (job := job_of(conninfo, doc_id))["status"] == "failed" and job,
            timeout=90,
            what=lambda: f"the poison document to fail; worker:\n{worker.output()[-3000:]}",
        )
        # The configured attempts, no more: the first delivery and MAX_RETRIES retries of one message.
        assert max_deliveries(conninfo) == MAX_RETRIES + 1
        # Other chunks had been stored and embedded before the job failed; failing removed them again.
        assert failed["chunks_total"] >= 2 and failed["chunks_done"] >= 1, failed
        assert (failed["chunks"], failed["vectors"]) == (0, 0), failed
        assert search_hits(env, query) == []

        error = failed["error"]
        assert FAULT in error and "\n" not in error, error
        shown = json.loads(run_cli(env, "status", failed["id"], "--json", "--user", "ada").stdout)
        assert (shown["status"], shown["error"]) == ("failed", error)
        # Wide enough that the table's error column holds the line unfolded.
        table = run_cli(env | {"COLUMNS": "400"}, "status", "--user", "ada").stdout
        assert "failed" in table and FAULT in table, table

        key = run_cli(env, "keys", "create", "--user", "ada").stdout.strip()
        with TestClient(create_app(Settings(_env_file=None))) as api:
            headers = {"Authorization": f"Bearer {key}"}
            job = api.get(f"/v1/jobs/{failed['id']}", headers=headers).json()
            assert (job["status"], job["error"]) == ("failed", error)
            hits = api.post("/v1/search", json={"query": query, "top_k": 5}, headers=headers).json()
            assert hits["results"] == []

        heal(conninfo)
        retried = run_cli(env, "retry", failed["id"])
        assert retried.returncode == 0, retried.stderr
        wait_until(
            lambda: job_of(conninfo, doc_id)["status"] == "completed",
            timeout=90,
            what=lambda: f"the retried job to complete; worker:\n{worker.output()[-3000:]}",
        )

    done = job_of(conninfo, doc_id)
    assert done["id"] == failed["id"] and done["error"] is None
    assert done["chunks"] == done["vectors"] == done["chunks_total"]
    # The same query finds it now: the empty results above were the failure's doing, not the query's.
    assert search_hits(env, query)[0]["filename"] == doc.name
