"""Fair sharing (workers.admission): one user's upload of 200 files does not starve another user's single
file. The broker holds at most INGEST_USER_ACTIVE_JOBS jobs of a user; the rest wait in the database, so
the second user's job is queued behind a handful of the first user's, not behind all 200."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import redis
from production_support import run_cli, wait_until, worker_group, write_documents

from ingest.config import Settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]

BACKLOG = 200
ACTIVE = 4


def jobs_of(conninfo: str, user: str) -> dict[str, int]:
    """status → count of the user's jobs."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT j.status, count(*) FROM jobs j JOIN documents d ON d.id = j.document_id"
            " JOIN users u ON u.id = d.owner_id WHERE u.name = %s GROUP BY j.status",
            (user,),
        ).fetchall()
    return dict(rows)


def test_one_users_backlog_does_not_starve_another_users_single_file(
    worker_env, settings: Settings, shared_redis: redis.Redis, tmp_path: Path
) -> None:
    env = worker_env(USER_ACTIVE_JOBS=str(ACTIVE))
    conninfo = settings.database_url or ""
    write_documents(tmp_path / "alice", BACKLOG, seed=51, words=20, prefix="alice")
    bob_file = write_documents(tmp_path / "bob", 1, seed=52, words=20, prefix="bob")[0]
    # Both uploads are in before any worker runs: without fair sharing, bob's message would be the 201st.
    alice = run_cli(env, "add", "--no-wait", "--user", "alice", str(tmp_path / "alice"))
    assert f"{BACKLOG} queued" in alice.stdout, alice.stdout + alice.stderr
    assert "1 queued" in run_cli(env, "add", "--no-wait", "--user", "bob", str(bob_file)).stdout
    assert shared_redis.llen(f"{env['INGEST_BROKER_NAMESPACE']}:ingest") == ACTIVE + 1

    with worker_group(env, tmp_path / "worker.log") as worker:
        wait_until(
            lambda: jobs_of(conninfo, "bob").get("completed") == 1,
            timeout=120,
            what=lambda: f"bob's job to complete; worker:\n{worker.output()[-3000:]}",
        )
        alice_now = jobs_of(conninfo, "alice")
    # Bob waited for a few of alice's jobs (those admitted before his, and top-ups racing his), while
    # most of her backlog had not even been sent to the broker yet.
    assert alice_now.get("completed", 0) < BACKLOG // 4, alice_now
    assert alice_now.get("queued", 0) > BACKLOG // 2, alice_now
