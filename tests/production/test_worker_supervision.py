"""`ingest worker` restarts a worker process that dies instead of stopping the group: SIGKILL one, the other
carries on untouched, a new one takes its place, and new work still completes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from production_support import (
    WorkerGroup,
    all_jobs_final,
    children,
    job_states,
    run_cli,
    wait_until,
    write_documents,
)

from ingest.config import Settings

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def worker_processes(group: WorkerGroup) -> dict[int, int]:
    """Each worker command (a child of the supervisor) with its Dramatiq worker process, when it has one."""
    found = {}
    for command in children(group.proc.pid):
        workers = children(command)
        if workers:
            found[command] = workers[0]
    return found


def three(found: dict[int, int]) -> dict[int, int] | None:
    """Two ingestion processes and the callbacks process."""
    return found if len(found) == 3 else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: its state in /proc is Z.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_worker_process_is_restarted_and_the_others_go_on(
    worker_env, settings: Settings, tmp_path: Path
) -> None:
    env = worker_env()
    group = WorkerGroup(env, tmp_path / "worker.log", processes=2, threads=1)
    try:
        group.wait_ready()
        before = wait_until(lambda: three(worker_processes(group)), timeout=30, what="three worker processes")
        # The commands start in order: the two ingestion processes first, the callbacks process last.
        (victim_command, victim), (other_command, other), _ = sorted(before.items())

        ready = group.output().count('"worker_ready"')
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: group.output().count('"worker_ready"') > ready,
            timeout=60,
            what=lambda: f"a new worker process to start; log:\n{group.output()[-3000:]}",
        )
        assert '"worker_process_died"' in group.output()
        assert group.proc.poll() is None  # the supervisor carries on
        assert alive(other) and alive(other_command)  # the other worker was never touched
        after = worker_processes(group)
        assert after[other_command] == other and victim_command not in after and len(after) == 3

        docs = write_documents(tmp_path / "docs", 6, seed=23)
        assert "queued" in run_cli(env, "add", "--no-wait", *map(str, docs)).stdout
        conninfo = settings.database_url or ""
        wait_until(
            lambda: all_jobs_final(conninfo, 6),
            timeout=120,
            what=lambda: f"the documents to complete; log:\n{group.output()[-3000:]}",
        )
        assert job_states(conninfo) == {"completed": 6}
        assert alive(other)
    finally:
        group.stop()
    assert group.proc.returncode == 0
    assert not alive(other)  # stopped with the supervisor
