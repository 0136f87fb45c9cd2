"""The CLI as a user runs it: the embedded default, jobs run in-process, a real PostgreSQL."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.cli.main import app

runner = CliRunner()


def ingest(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus-sample"


@pytest.fixture
def samples(ingest_env: dict[str, str]) -> Path:
    return SAMPLES


def test_add_samples_then_search_finds_the_quoted_passage(samples: Path) -> None:
    added = ingest("add", str(samples))
    assert added.exit_code == 0, added.output + added.stderr
    assert "6 completed" in added.stdout  # five formats and SOURCES.md

    found = ingest("search", "There was nothing else to do, so Alice soon began talking again.", "--json")
    assert found.exit_code == 0, found.stderr
    results = json.loads(found.stdout)["results"]
    assert results[0]["filename"] == "carroll-wonderland.pdf"
    # Hybrid search ranks the passage among the book's best chunks (its common words are in many of them).
    assert any("Alice soon began talking again" in " ".join(r["text"].split()) for r in results[:3])

    verified = ingest("verify")
    assert verified.exit_code == 0, verified.stdout
    assert "6 completed documents checked, 0 problems" in verified.stdout

    again = ingest("add", str(samples / "Apache-2.0.txt"))
    assert again.exit_code == 0
    assert "1 duplicate" in again.stdout


def test_one_bad_file_does_not_stop_the_others(ingest_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(SAMPLES / "docker-plugins-volume.md", folder / "good.md")
    (folder / "scan.pdf").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (folder / "also-good.txt").write_text("A short note about volumes and plugins.\n\nA second paragraph.")
    # Accepted at upload (a well-formed zip), refused while parsing: the job fails, the others go on.
    shutil.copy(CORPUS / "hostile" / "docx_billion_laughs.docx", folder / "laughs.docx")

    result = ingest("add", str(folder))
    assert result.exit_code == 1
    assert "2 completed" in result.stdout and "1 refused" in result.stdout and "1 failed" in result.stdout
    assert "scan.pdf" in result.stdout and "PNG" in result.stdout
    assert "laughs.docx" in result.stdout

    status = ingest("status", "--json")
    rows = json.loads(status.stdout)
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "failed"]
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["error"] and "\n" not in failed["error"]


def test_retry_runs_a_failed_job_again(samples: Path) -> None:
    from ingest.config import Settings
    from workers.runtime import Runtime
    from workers.states import fail_job

    assert ingest("add", str(samples / "Apache-2.0.txt")).exit_code == 0
    job = json.loads(ingest("status", "--json").stdout)[0]
    with Runtime.open(Settings(_env_file=None)) as rt:
        with rt.pool.connection() as conn:
            conn.execute("UPDATE jobs SET status = 'running' WHERE id = %s", (job["id"],))
        assert fail_job(rt, job["id"], "simulated vendor outage")
    failed = json.loads(ingest("status", job["id"], "--json").stdout)
    assert (failed["status"], failed["error"]) == ("failed", "simulated vendor outage")
    assert ingest("search", "Apache License", "--json").stdout.count('"chunk_id"') == 0  # nothing searchable

    # With the embedded default the job runs in this command: it returns when the job is done.
    retried = ingest("retry", job["id"])
    assert retried.exit_code == 0, retried.stderr
    assert f"job {job['id']} completed" in retried.stdout
    assert json.loads(ingest("status", job["id"], "--json").stdout)["status"] == "completed"
    assert ingest("search", "Apache License", "--json").stdout.count('"chunk_id"') > 0

    again = ingest("retry", job["id"])
    assert again.exit_code != 0 and "completed, not failed" in again.stderr


def test_mode_show_and_set(ingest_env: dict[str, str]) -> None:
    assert json.loads(ingest("mode", "show", "--json").stdout) == {"llamaparse": "mock", "openai": "mock"}
    assert ingest("mode", "set", "hybrid", "--service", "openai").exit_code == 0
    assert json.loads(ingest("mode", "show", "--json").stdout) == {"llamaparse": "mock", "openai": "hybrid"}
    bad = ingest("mode", "set", "hybrid", "--service", "nope")
    assert bad.exit_code != 0 and "unknown service" in bad.stderr


def test_health_reports_each_dependency(ingest_env: dict[str, str]) -> None:
    result = ingest("health", "--json")
    assert result.exit_code == 0, result.stdout
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert {"database", "blob_store", "broker", "llamaparse", "openai"} <= set(checks)
    assert "pgvector" in checks["database"]["detail"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("search", "   "), "the query is empty"),
        (("status", "not-an-id"), "is not a job or document id"),
        (("add", "/no/such/path"), "no such file or folder"),
    ],
)
def test_errors_are_one_clear_line(ingest_env: dict[str, str], args: tuple[str, ...], message: str) -> None:
    result = ingest(*args)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
