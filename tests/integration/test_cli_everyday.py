"""The everyday commands as an operator types them: one-line errors, the CLI user, documents, keys, budgets,
the version, a SQL shell, and tables that fit 80 columns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.progress import Progress, TaskID
from typer.testing import CliRunner

from ingest.cli import add as add_module
from ingest.cli.db import find_psql
from ingest.cli.main import app

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def ingest(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


@pytest.fixture
def note(ingest_env: dict[str, str], tmp_path: Path) -> Path:
    path = tmp_path / "harbour-notes.txt"
    path.write_text("The harbour opens at dawn.\n\nThe ferries of the northern route leave at nine.\n")
    return path


def test_version_and_help() -> None:
    assert ingest("--version").stdout.startswith("ingest ")
    helped = ingest("--help")
    assert helped.exit_code == 0 and "documents" in helped.stdout and "keys" in helped.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["budget", "set", "-5"], 1, "cannot be negative"),
        (["status", "--bogus"], 2, "No such option: --bogus"),
        (["search"], 2, "Missing argument"),
        (["nosuch"], 2, "No such command"),
        (["search", "x", "-k", "0"], 2, "-k"),
    ],
)
def test_every_error_is_one_line_on_stderr(
    ingest_env: dict[str, str], args: list[str], code: int, says: str
) -> None:
    result = ingest(*args)
    assert result.exit_code == code
    assert result.stderr.startswith("error: ") and says in result.stderr
    assert result.stderr.count("\n") == 1 and "╭" not in result.stderr and result.stdout == ""


def test_the_cli_user_is_local_unless_named_and_status_shows_whose_jobs(
    note: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ingest("add", str(note), "--user", "ada").exit_code == 0
    local = ingest("status")
    assert "user local" in local.stdout and "harbour-notes" not in local.stdout
    monkeypatch.setenv("INGEST_USER", "ada")
    ada = ingest("status")
    assert "user ada" in ada.stdout and "harbour-notes" in ada.stdout
    monkeypatch.delenv("INGEST_USER")
    every = ingest("status", "--all")
    assert "every user" in every.stdout and "harbour-notes" in every.stdout
    assert "harbour-notes" in ingest("status", "--user", "ada").stdout


def test_status_fits_80_columns(note: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ingest("add", str(note)).exit_code == 0
    job_id = json.loads(ingest("status", "--json").stdout)[0]["id"]
    monkeypatch.setenv("COLUMNS", "80")
    shown = ingest("status").stdout
    assert all(len(line) <= 80 for line in shown.splitlines())
    assert job_id[:8] in shown  # the short id, on one line
    assert ingest("status", job_id[:8]).exit_code == 0  # and it names the job again


def test_no_wait_exits_0_once_queued(note: Path) -> None:
    result = ingest("add", "--no-wait", str(note))
    assert result.exit_code == 0, result.stdout + result.stderr


def test_search_without_documents_says_so_and_exits_0(ingest_env: dict[str, str]) -> None:
    result = ingest("search", "anything at all")
    assert result.exit_code == 0
    assert (
        "no results" in result.stdout
        and "no documents yet" in result.stdout
        and "ingest add" in result.stdout
    )


def test_documents_list_show_delete_are_the_users_own(note: Path) -> None:
    assert ingest("add", str(note), "--user", "ada").exit_code == 0
    listed = json.loads(ingest("documents", "list", "--user", "ada", "--json").stdout)
    assert [d["filename"] for d in listed] == ["harbour-notes.txt"] and listed[0]["chunks"] >= 1
    short = listed[0]["id"][:8]
    assert short in ingest("documents", "list", "--user", "ada").stdout
    shown = ingest("documents", "show", short, "--user", "ada")
    assert shown.exit_code == 0 and "filename: harbour-notes.txt" in shown.stdout
    # Another user neither sees nor deletes it, and is not told it exists.
    refused = ingest("documents", "delete", short, "--user", "bob")
    assert refused.exit_code == 1 and "bob has no document" in refused.stderr
    assert ingest("documents", "delete", short, "--user", "ada").exit_code == 0
    assert json.loads(ingest("documents", "list", "--user", "ada", "--json").stdout) == []
    assert "no results" in ingest("search", "harbour", "--user", "ada").stdout


def test_keys_list_and_revoke(ingest_env: dict[str, str]) -> None:
    key = ingest("keys", "create", "--user", "ada").stdout.strip()
    (listed,) = json.loads(ingest("keys", "list", "--json").stdout)
    assert listed["user"] == "ada" and key.startswith(listed["prefix"]) and listed["revoked_at"] is None
    assert key not in ingest("keys", "list").stdout
    assert ingest("keys", "revoke", str(listed["id"])).exit_code == 0
    assert json.loads(ingest("keys", "list", "--json").stdout)[0]["revoked_at"] is not None
    missing = ingest("keys", "revoke", "999999")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no API key")


def test_budget_show_set_unset(ingest_env: dict[str, str]) -> None:
    assert json.loads(ingest("budget", "show", "--json").stdout) == {
        "all": None,
        "llamaparse": None,
        "openai": None,
    }
    assert ingest("budget", "set", "5", "--service", "openai").exit_code == 0
    assert json.loads(ingest("budget", "show", "--json").stdout)["openai"] == "5.000000"
    assert "openai: $5.000000 a day" in ingest("budget", "show").stdout
    assert ingest("budget", "unset", "--service", "openai").exit_code == 0
    assert json.loads(ingest("budget", "show", "--json").stdout)["openai"] is None


def test_db_shell_runs_psql_on_the_configured_database(note: Path) -> None:
    assert ingest("add", str(note)).exit_code == 0
    if find_psql() is None:
        pytest.skip("no psql: neither in the pgserver wheel nor on PATH")
    found = subprocess.run(
        [
            str(Path(sys.executable).parent / "ingest"),
            "db",
            "shell",
            "-tA",
            "-c",
            "SELECT filename FROM documents",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "harbour-notes.txt"


class RecordingProgress(Progress):
    """The progress display `ingest add` draws, with every (completed, total) of each bar kept."""

    seen: ClassVar[dict[str, list[tuple[float | None, float | None]]]] = {}

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task = super().add_task(description, *args, **kwargs)
        self.seen[description] = []
        return task

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        shown = self.tasks[task_id]
        self.seen[shown.description].append((shown.completed, shown.total))


def test_progress_totals_only_grow_and_duplicates_add_no_chunks(
    ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(add_module, "Progress", RecordingProgress)
    assert ingest("add", str(SAMPLES)).exit_code == 0
    chunks = [(done, total) for done, total in RecordingProgress.seen["chunks"] if total is not None]
    totals = [total for _, total in chunks]
    assert totals == sorted(totals) and totals[-1] and totals[-1] > 0  # never shrinks back
    assert chunks[-1][0] == chunks[-1][1]  # every chunk embedded by the end

    RecordingProgress.seen.clear()
    again = ingest("add", str(SAMPLES))
    assert again.exit_code == 0 and "6 duplicate" in again.stdout
    assert all(total is None for _, total in RecordingProgress.seen["chunks"])  # nothing new to embed
