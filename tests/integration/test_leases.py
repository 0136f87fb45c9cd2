"""Job leases against a real PostgreSQL, with two runtimes standing for two worker processes: a worker
whose lease lapsed and moved on writes nothing and charges only what the vendor billed it; a lease
whose process is gone is re-sent at the next sweep, without waiting for it to expire."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from ingest.config import Settings
from ingest.leases import PARSE, embed_unit, new_owner
from ingest.services.submit import Submitted
from ingest.store import chunks, leases
from router.decide import Mode
from router.protocols import EmbedResult
from tests.integration.conftest import BillingEmbedder
from workers import leasing, messages
from workers.embed_stage import embed_stage
from workers.middleware.sweeper import requeue_unfinished
from workers.parse_stage import parse_stage
from workers.runtime import Runtime

MeteredRuntime = Callable[[Settings], AbstractContextManager[Any]]
SubmitText = Callable[..., Submitted]


def lapse(rt: Runtime, job_id: UUID) -> None:
    """What a frozen worker's leases come to once its heartbeat has been silent for lease_s."""
    with rt.pool.connection() as conn:
        conn.execute("UPDATE job_leases SET expires_at = now() WHERE job_id = %s", (job_id,))


class FrozenMidCall(BillingEmbedder):
    """Bills the call as the vendor does, then hangs (the worker froze with the answer on its way)
    until the test lets it go on."""

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.calling, self.go_on = threading.Event(), threading.Event()

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        result = super().embed(texts)
        self.calling.set()
        assert self.go_on.wait(60)
        return result


def stored(rt: Runtime, document_id: UUID) -> tuple[int, int]:
    with rt.pool.connection() as conn:
        return chunks.count(conn, document_id), conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id = %s AND space_id IS NOT NULL", (document_id,)
        ).fetchone()[0]


def charges(rt: Runtime) -> list[tuple[str, str]]:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT key, state FROM cost_entries WHERE NOT simulated AND stage = 'embed' ORDER BY key"
        ).fetchall()


def test_a_worker_that_wakes_after_its_batch_moved_on_stores_nothing_and_the_ledger_counts_every_call(
    settings: Settings, tmp_path: Path, metered_runtime: MeteredRuntime, submit_text: SubmitText
) -> None:
    with metered_runtime(settings) as (a, _, _), metered_runtime(settings) as (b, b_vendor, _):
        assert a.leases.owner != b.leases.owner  # two processes
        a_vendor = FrozenMidCall(a.settings.openai_embedding_model)
        a.router._real_embedder = a_vendor
        a.router.modes.set(Mode.REAL, ("openai",))
        sub = submit_text(a, tmp_path)
        first, *rest = parse_stage(a, sub.job_id)
        a_lease = leasing.take(a, sub.job_id, embed_unit(first.first, first.last))
        assert a_lease is not None
        # B cannot take the batch while A's lease is live: a duplicate message does nothing.
        assert leasing.take(b, sub.job_id, a_lease.unit) is None

        errors: list[BaseException] = []

        def worker_a() -> None:
            try:
                embed_stage(a, sub.job_id, first.first, first.last, a_lease)
            except BaseException as exc:  # noqa: BLE001  (the test reads what A ended with)
                errors.append(exc)

        thread = threading.Thread(target=worker_a)
        thread.start()
        assert a_vendor.calling.wait(60)  # A's call is billed; A freezes before it can store the vectors
        lapse(a, sub.job_id)
        for batch in (first, *rest):  # the sweep re-sent A's batch; B does it and the rest
            embed_stage(b, sub.job_id, batch.first, batch.last)
        done_by_b = stored(b, sub.document_id)
        a_vendor.go_on.set()  # A wakes up
        thread.join(60)

        assert len(errors) == 1 and isinstance(errors[0], leasing.LeaseLost), errors
        assert stored(a, sub.document_id) == done_by_b and done_by_b[0] == done_by_b[1]  # A wrote nothing
        with a.pool.connection() as conn:
            status = conn.execute("SELECT status FROM jobs WHERE id = %s", (sub.job_id,)).fetchone()[0]
        assert status == "completed"
        # Both calls were billed, so both are charged: B's under the key, A's on its own row (charged
        # `unknown` when B took the call over, then settled to its bill when A woke).
        key = f"{sub.document_id}:embed:{first.first}-{first.last}"
        batch_rows = [row for row in charges(a) if row[0].startswith(key)]
        assert len(batch_rows) == 2 and (key, "charged") in batch_rows, batch_rows
        [(a_key, a_state)] = [row for row in batch_rows if row[0] != key]
        assert a_key.startswith(f"{key}:unknown:") and a_state == "charged"
        assert len(charges(a)) == len(a_vendor.calls) + len(b_vendor.calls) == len(rest) + 2


def test_a_worker_whose_parse_moved_on_before_its_call_neither_pays_nor_writes(
    settings: Settings, tmp_path: Path, metered_runtime: MeteredRuntime, submit_text: SubmitText
) -> None:
    with metered_runtime(settings) as (a, _, _), metered_runtime(settings) as (b, _, _):
        sub = submit_text(a, tmp_path)
        a_lease = leasing.take(a, sub.job_id, PARSE)
        assert a_lease is not None
        lapse(a, sub.job_id)  # A froze before it started
        pending = parse_stage(b, sub.job_id)
        assert pending and stored(b, sub.document_id)[0] > 0
        with b.pool.connection() as conn:
            before = conn.execute(
                "SELECT attempts, claimed_by FROM jobs WHERE id = %s", (sub.job_id,)
            ).fetchone()
            entries = conn.execute("SELECT count(*) FROM cost_entries").fetchone()[0]

        with pytest.raises(leasing.LeaseLost):
            parse_stage(a, sub.job_id, a_lease)

        with a.pool.connection() as conn:
            after = conn.execute(
                "SELECT attempts, claimed_by FROM jobs WHERE id = %s", (sub.job_id,)
            ).fetchone()
            assert conn.execute("SELECT count(*) FROM cost_entries").fetchone()[0] == entries
        assert after == before == (1, b.leases.owner)


def test_leases_of_a_process_that_is_gone_are_resent_at_the_next_sweep(
    settings: Settings, tmp_path: Path, submit_text: SubmitText
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_owner = new_owner(pid=int(gone.stdout))

    with Runtime.open(settings) as rt:
        sub = submit_text(rt, tmp_path)
        with rt.pool.connection() as conn:
            conn.execute("DELETE FROM job_leases")
            held = leases.put_over(conn, sub.job_id, PARSE, dead_owner, 3600)  # an hour before it expires
            live = leases.put_over(conn, sub.job_id, embed_unit(0, 3), new_owner(), 3600)
        resent = requeue_unfinished(rt, messages.started_broker(), idle_s=rt.settings.requeue_after_s)
        with rt.pool.connection() as conn:
            rows = {lease.unit: lease for lease in leases.of_job(conn, sub.job_id)}
    assert resent == 1
    assert rows[PARSE].owner is None and rows[PARSE].generation == held.generation + 1  # its holder is fenced
    assert rows[live.unit].owner == live.owner and rows[live.unit].generation == live.generation


def test_ingest_status_shows_who_holds_a_running_job_and_when_it_last_reported(
    ingest_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    submit_text: SubmitText,
    run_ingest: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    worker = new_owner("worker-7", 4121)
    with Runtime.open(settings) as rt:
        sub = submit_text(rt, tmp_path)
        with rt.pool.connection() as conn:
            conn.execute("DELETE FROM job_leases")
            leases.put_over(conn, sub.job_id, PARSE, worker, 20)
    shown = run_ingest({**os.environ, **ingest_env}, "status", str(sub.job_id), "--json", "--all")
    assert shown.returncode == 0, shown.stderr
    held = json.loads(shown.stdout)["leases"]
    assert [(lease["unit"], lease["worker"]) for lease in held] == [(PARSE, worker)]
    assert held[0]["last_heartbeat_at"] < held[0]["expires_at"]
