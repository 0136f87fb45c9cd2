"""A worker killed with SIGKILL in the middle of `ingest reembed` loses nothing: the run's message comes
back (Redis gives a dead worker's unacknowledged messages to another), the run resumes where its vectors
stop, switches once every chunk has exactly one vector in the new space, and charges each batch once."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from production_support import WorkerGroup, run_cli, set_modes, wait_until, worker_group, write_documents

from ingest.config import Settings
from mocks.faults import FaultPlan

pytestmark = [pytest.mark.redis, pytest.mark.slow]
LARGE = ("text-embedding-3-large", 32)


def run_state(conninfo: str) -> tuple[str, int]:
    """The run's status and how many vectors its target holds."""
    with psycopg.connect(conninfo) as conn:
        status, table = conn.execute(
            "SELECT r.status, s.table_name FROM reembeds r JOIN embedding_spaces s ON s.id = r.target_space_id"
        ).fetchone()
        return status, conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_worker_killed_mid_reembed_resumes_without_duplicates_or_double_charges(
    standins: object, worker_env, settings: Settings, tmp_path: Path
) -> None:
    set_modes(settings, openai="real")
    env = worker_env(
        EMBED_BATCH_CHUNKS="2", OPENAI_EMBEDDING_DIMENSIONS="64", CHUNK_TOKENS="32", CHUNK_OVERLAP="0"
    )
    conninfo = settings.database_url or ""
    docs = write_documents(tmp_path / "docs", 3, seed=17, words=60)
    injector = standins.state.openai.state.injector  # type: ignore[attr-defined]

    first = WorkerGroup(env, tmp_path / "first-worker.log")
    try:
        first.wait_ready()
        added = run_cli(env, "add", *map(str, docs))
        assert added.returncode == 0, added.stdout + added.stderr
        with psycopg.connect(conninfo) as conn:
            chunks, tokens = conn.execute("SELECT count(*), sum(token_count) FROM chunks").fetchone()
        assert chunks >= 6
        # Every embedding request now takes 3 s: a wide window to kill the worker inside one.
        injector.plan = FaultPlan(latency_ms=3000)
        served = injector.stats.served
        started = run_cli(
            env, "reembed", "--model", LARGE[0], "--dimensions", str(LARGE[1]), "--yes", "--no-wait"
        )
        assert started.returncode == 0, started.stdout + started.stderr
        wait_until(
            lambda: injector.stats.served >= served + 2,
            timeout=90,
            what="a second re-embed request in flight",
        )
        status, stored = run_state(conninfo)
        assert status == "building" and 0 < stored < chunks, (status, stored)
    finally:
        first.kill()
    injector.plan = FaultPlan()

    with worker_group(env, tmp_path / "second-worker.log") as second:
        wait_until(
            lambda: run_state(conninfo)[0] == "switched",
            timeout=120,
            what=lambda: f"the run to switch after the kill; second worker:\n{second.output()[-3000:]}",
        )
    with psycopg.connect(conninfo) as conn:
        table = conn.execute(
            "SELECT table_name FROM embedding_spaces WHERE model = %s AND dimensions = %s", LARGE
        ).fetchone()[0]
        per_chunk = conn.execute(
            f"SELECT c.id, count(v.chunk_id) FROM chunks c LEFT JOIN {table} v ON v.chunk_id = c.id GROUP BY c.id"
        ).fetchall()
        moved = conn.execute(
            "SELECT count(*) FROM chunks c JOIN active_space a ON a.space_id = c.space_id"
        ).fetchone()[0]
        charges = conn.execute(
            "SELECT key, state, usage FROM cost_entries WHERE stage = 'reembed' AND NOT simulated"
        ).fetchall()
    assert len(per_chunk) == chunks and {n for _, n in per_chunk} == {1}  # one vector each, no duplicate
    assert moved == chunks  # every search reads the new space
    # Each batch charged once, for its tokens: the one the killed worker was waiting on was taken over
    # by the next delivery (one reservation, one charge), not paid for a second time in the ledger.
    keys = [key for key, _, _ in charges]
    assert len(keys) == len(set(keys)) and {state for _, state, _ in charges} == {"charged"}
    assert sum(usage["tokens"] for _, _, usage in charges) == tokens
    assert all(usage["model"] == LARGE[0] for _, _, usage in charges)
