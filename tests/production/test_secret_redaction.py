"""Secrets never reach a log line or an error: the vendor keys, the password of a password-protected Redis
and of the database URL. The worker and the CLI run with all of them set (the keys are not shaped like
vendor keys, so only knowing the configured values can catch them), one document completes through the
real OpenAI client, and another fails with an error that quotes its connection string and a key,
as a driver's message may: every line of output and the stored, shown error are scrubbed."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from production_support import (
    PrivateRedis,
    db_activity,
    documents_by_id,
    job_of,
    job_states,
    json_lines,
    poison_document,
    run_cli,
    set_modes,
    wait_until,
    worker_group,
    write_documents,
)
from psycopg.conninfo import conninfo_to_dict

from ingest.api.app import create_app
from ingest.config import Settings
from mocks.openai_api import Ledger

pytestmark = [pytest.mark.redis, pytest.mark.slow]
REDACTED = "[redacted]"


def url_with_password(conninfo: str, password: str) -> str:
    """The test database as a URL with a password (the embedded server trusts local users, so any works)."""
    parts = conninfo_to_dict(conninfo)
    return f"postgresql://{parts['user']}:{quote(password)}@/{parts['dbname']}?host={quote(parts['host'], safe='')}"


def test_secrets_are_redacted_from_logs_and_errors(
    standins: object,
    worker_env,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    openai_records: Callable[[object], Ledger],
) -> None:
    keys = {
        "OPENAI_API_KEY": f"openai-{secrets.token_hex(12)}",
        "LLAMA_CLOUD_API_KEY": f"llama-{secrets.token_hex(12)}",
    }
    passwords = {"redis": secrets.token_hex(12), "database": secrets.token_hex(12)}
    broker = PrivateRedis(tmp_path / "redis", password=passwords["redis"])
    (tmp_path / "redis").mkdir()
    broker.start()
    database_url = url_with_password(settings.database_url or "", passwords["database"])
    set_modes(settings, openai="real")
    # One retry: the failing document still ends soon, and a fault of the loaded machine (a deadlock victim,
    # a slow pool) does not fail the healthy one.
    env = worker_env(LOG_LEVEL="DEBUG", JOB_MAX_RETRIES="1", EMBED_BATCH_CHUNKS="1")
    env |= {**keys, "REDIS_URL": broker.url, "DATABASE_URL": database_url}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)  # the API below runs in this process
    monkeypatch.setenv("DATABASE_URL", database_url)
    everything = [*keys.values(), *passwords.values()]

    healthy, failing = write_documents(tmp_path / "docs", 2, seed=61, words=320)
    cli = [run_cli(env, "add", "--no-wait", str(healthy), str(failing))]
    doc_ids = documents_by_id(settings.database_url or "")
    leak = (
        f"connection to {database_url} refused (keys {keys['OPENAI_API_KEY']}, {keys['LLAMA_CLOUD_API_KEY']})"
    )
    poison_document(settings.database_url or "", doc_ids[failing.name], leak)
    try:
        with worker_group(env, tmp_path / "worker.log") as worker:
            wait_until(
                lambda: (
                    {job_of(settings.database_url or "", d)["status"] for d in doc_ids.values()}
                    == {"completed", "failed"}
                ),
                timeout=120,
                what=lambda: (
                    f"one document to complete and one to fail ({job_states(settings.database_url or '')});"
                    f" sessions:\n{db_activity(settings.database_url or '')}\nworker:\n{worker.output()[-6000:]}"
                ),
            )
            failed = job_of(settings.database_url or "", doc_ids[failing.name])
            cli.append(run_cli(env, "status", failed["id"], "--json"))
            cli.append(run_cli(env, "health"))
            key = run_cli(env, "keys", "create", "--user", "local").stdout.strip()
        log = worker.output()
    finally:
        broker.stop()

    # The secrets were in use: the real clients called the OpenAI stand-in with the key, through the
    # password-protected Redis and the database URL with its password.
    assert openai_records(standins).requests > 0, "no real embedding call was made"
    output = log + "".join(result.stdout + result.stderr for result in cli)
    for secret in everything:
        assert secret not in output
    lines = json_lines(log)
    # The redactor met each kind of secret, and left the rest of the line readable.
    [ready] = [line for line in lines if line["event"] == "worker_ready"]
    assert ready["url"] == f"redis://{REDACTED}@127.0.0.1:{broker.port}/0"
    [verdict] = [line for line in lines if line["event"] == "job_failed"]
    assert str(verdict["error"]).startswith("connection to postgresql://") and REDACTED in str(
        verdict["error"]
    )
    # Dramatiq's own report of the failure, traceback included (batches failing after it, on the chunks
    # the failure deleted, report other errors).
    tracebacks = [
        str(line["exception"])
        for line in lines
        if "Failed to process message" in str(line["event"])
        and "connection to postgresql://" in str(line["exception"])
    ]
    assert tracebacks and all(REDACTED in text for text in tracebacks)

    # The error a user sees, stored once and shown by the CLI and the API, is the redacted one.
    assert REDACTED in str(failed["error"]) and not any(s in str(failed["error"]) for s in everything)
    assert json.loads(cli[1].stdout)["error"] == failed["error"]
    with TestClient(create_app(Settings(_env_file=None))) as api:
        shown = api.get(f"/v1/jobs/{failed['id']}", headers={"Authorization": f"Bearer {key}"}).json()
    assert shown["error"] == failed["error"]
