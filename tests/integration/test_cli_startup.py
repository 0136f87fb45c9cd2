"""The commands that only read or write rows start light: run in a fresh interpreter, as a user runs them,
each does its work on one database connection and loads none of the pipeline (runtime, router, broker,
vendor clients, numpy, the tokenizer, the format parsers); `--help` and `--version` load no command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.cli.main import COMMANDS, app

HEAVY = (
    "workers.runtime",
    "router.factory",
    "costs.meter",
    "dramatiq",
    "psycopg_pool",
    "httpx",
    "openai",
    "llama_cloud",
    "numpy",
    "tiktoken",
    "ingest.formats",
)

# Runs the command as the `ingest` script does, then writes what it loaded to the file named by argv[1].
PROBE = """
import json, sys
from ingest.cli.main import app
report, args = sys.argv[1], sys.argv[2:]
try:
    app(args, prog_name="ingest")
except SystemExit as exit:
    code = exit.code
with open(report, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def run(tmp_path: Path, *args: str) -> tuple[int, set[str], str, str]:
    """Exit code, modules loaded, stdout and stderr of `ingest ARGS` in a fresh interpreter."""
    report = tmp_path / "loaded.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = json.loads(report.read_text())
    return found["code"], set(found["modules"]), done.stdout, done.stderr


@pytest.fixture
def added(ingest_env: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    """One document ingested (in this process: the light commands below then have something to show)."""
    note = tmp_path / "harbour-notes.txt"
    note.write_text("The harbour opens at dawn.\n\nThe ferries of the northern route leave at nine.\n")
    runner = CliRunner()
    assert runner.invoke(app, ["add", str(note)]).exit_code == 0
    job = json.loads(runner.invoke(app, ["status", "--json"]).stdout)[0]
    return job["id"], job["document_id"]


def test_help_and_version_load_no_command(tmp_path: Path) -> None:
    commands = {entry.target.partition(":")[0] for entry in COMMANDS.values()}
    for args in (["--help"], ["--version"]):
        code, loaded, out, _ = run(tmp_path, *args)
        assert code == 0 and out
        assert not loaded & commands, loaded & commands
        assert "ingest.config" not in loaded and "psycopg" not in loaded


def test_the_read_only_commands_answer_without_the_pipeline(added: tuple[str, str], tmp_path: Path) -> None:
    job_id, document_id = added
    for args, says in (
        (["status"], "harbour-notes.txt"),
        (["status", job_id[:8], "--json"], document_id),
        (["status", "--failed"], "0 failed jobs"),
        (["documents", "list"], "harbour-notes.txt"),
        (["documents", "show", document_id[:8]], "status: completed"),
        (["keys", "list"], "0 API keys"),
        (["budget", "show"], "all services: no limit"),
        (["costs", "--json"], '"total"'),
        (["verify"], "1 completed documents checked, 0 problems"),
        (["mode", "set", "hybrid", "--service", "openai"], "openai: hybrid"),
        (["mode", "show", "--json"], '"openai": "hybrid"'),
    ):
        code, loaded, out, err = run(tmp_path, *args)
        assert code == 0 and says in out and err == "", (args, out, err)
        assert not loaded.intersection(HEAVY), (args, sorted(loaded.intersection(HEAVY)))


def test_a_command_that_runs_the_pipeline_still_opens_the_runtime(
    ingest_env: dict[str, str], tmp_path: Path
) -> None:
    # The probe sees what a command loads: `health` needs the router, and loads it.
    code, loaded, _, _ = run(tmp_path, "health")
    assert "workers.runtime" in loaded and "router.factory" in loaded
    assert code in (0, 1)  # 1 when a dependency (the broker, a vendor) is not configured here
