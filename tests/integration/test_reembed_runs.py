"""A re-embed run step by step (workers.reembed.advance, the body of its actor): the budget stops it
without overshooting and it resumes the next budget day; a lost message is re-sent by the sweeper's part
and the late original then does nothing; searches read the old space until the switch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from costs import ledger
from costs.money import total
from ingest.config import Settings
from ingest.services import reembed as service
from ingest.services.submit import Submitted
from ingest.store import reembeds, spaces, vectors
from router.decide import Mode
from tests.integration.conftest import BillingEmbedder
from workers import reembed
from workers.embed_stage import embed_stage
from workers.parse_stage import parse_stage

LARGE = ("text-embedding-3-large", 16)


def _reembed_charges(rt) -> list:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT state, amount_usd FROM cost_entries WHERE stage = 'reembed' AND NOT simulated"
        ).fetchall()


def test_budget_parks_the_run_and_a_lost_message_is_resent(
    settings: Settings,
    tmp_path: Path,
    metered_runtime: Callable[..., AbstractContextManager[Any]],
    submit_text: Callable[..., Submitted],
) -> None:
    with metered_runtime(settings) as (rt, vendor, clock):
        rt.router.modes.set(Mode.REAL, ("openai",))
        sub = submit_text(rt, tmp_path)
        for batch in parse_stage(rt, sub.job_id):
            embed_stage(rt, sub.job_id, batch.first, batch.last)
        with rt.pool.connection() as conn:
            old = spaces.active_space(conn)
        assert old is not None and (old.model, old.dimensions) == (vendor.model, vendor.dimensions)

        large = BillingEmbedder(*LARGE)
        rt.router._other_embedders[LARGE] = large  # the router builds real clients lazily; this one is ours
        planned = service.plan(rt, *LARGE)
        assert planned.quote.chunks >= 6
        spent = rt.router.meter.report().services["openai"].spent
        limit = spent + planned.quote.usd / 2  # room for about half the run today
        with rt.pool.connection() as conn:
            ledger.set_limit(conn, "openai", limit)
        run = service.start(rt, planned)

        step, parked = run.step, None
        while parked is None:
            following = reembed.advance(rt, run.id, step)
            assert following is not None
            step, delay_s = following
            with rt.pool.connection() as conn:
                parked = reembeds.get(conn, run.id).waiting_reason  # type: ignore[union-attr]
        assert "budget" in parked and delay_s == rt.router.meter.seconds_to_next_day()
        charged = _reembed_charges(rt)
        assert 0 < len(charged) < len(large.calls) + 1 and len(charged) == len(large.calls)
        assert spent + total([amount for _, amount in charged]) <= limit  # never over the budget
        now = service.progress(rt, run.id)
        assert now is not None and now.run.status == "building" and 0 < now.done < now.total
        with rt.pool.connection() as conn:
            assert spaces.active(conn).space_id == old.id  # searches stay on the old space meanwhile

        # The message for the next day is lost: the sweeper's part re-sends the stalled run at a new
        # step, and the old step's message, should it come late, does nothing.
        assert reembed.resend_stalled(rt, idle_s=0) == 0  # parked till the next day: not stalled before
        clock.now += timedelta(days=1)
        with rt.pool.connection() as conn:  # the database's clock, a day on too
            conn.execute("UPDATE reembeds SET touched_at = touched_at - interval '1 day'")
        assert reembed.resend_stalled(rt, idle_s=0) == 1
        assert reembed.advance(rt, run.id, step) is None
        assert len(large.calls) == len(charged)
        with rt.pool.connection() as conn:
            step = reembeds.get(conn, run.id).step  # type: ignore[union-attr]
        while (following := reembed.advance(rt, run.id, step)) is not None:
            step = following[0]

        now = service.progress(rt, run.id)
        assert now is not None and now.run.status == "switched" and now.done == now.total
        charged = _reembed_charges(rt)
        assert {state for state, _ in charged} == {"charged"}
        assert total([amount for _, amount in charged]) == planned.quote.usd == now.charged_usd
        with rt.pool.connection() as conn:
            active = spaces.active_space(conn)
        assert active is not None and (active.model, active.dimensions) == LARGE


def test_a_batch_embedding_for_the_old_space_when_the_switch_commits_embeds_again_for_the_new(
    settings: Settings,
    tmp_path: Path,
    metered_runtime: Callable[..., AbstractContextManager[Any]],
    submit_text: Callable[..., Submitted],
) -> None:
    # A long mode cache: this process still believes in the old space when its next batch runs.
    with metered_runtime(settings.model_copy(update={"mode_cache_s": 600})) as (rt, vendor, _):
        rt.router.modes.set(Mode.REAL, ("openai",))
        sub = submit_text(rt, tmp_path)
        first, second, *_ = parse_stage(rt, sub.job_id)
        embed_stage(rt, sub.job_id, first.first, first.last)
        large = BillingEmbedder(*LARGE)
        rt.router._other_embedders[LARGE] = large
        with rt.pool.connection() as conn, conn.transaction():
            old = spaces.active_space(conn)
            new = vectors.ensure_space(conn, *LARGE, simulated=False)
            assert old is not None
            spaces.lock(conn)
            ids = [r[0] for r in conn.execute("SELECT id FROM chunks WHERE space_id = %s", (old.id,))]
            vectors.write(conn, new, ids, np.ones((len(ids), LARGE[1]), np.float32))
            spaces.switch(conn, old, new)  # what a run's last step does
        assert rt.router.target() == (old.model, old.dimensions)  # stale in this process

        embed_stage(rt, sub.job_id, second.first, second.last)
        with rt.pool.connection() as conn:
            stored = conn.execute(
                "SELECT DISTINCT space_id FROM chunks WHERE document_id = %s AND ordinal BETWEEN %s AND %s",
                (sub.document_id, second.first, second.last),
            ).fetchall()
            in_old = vectors.count(conn, old)
            keys = dict(
                conn.execute(
                    "SELECT key, usage->>'model' FROM cost_entries WHERE stage = 'embed' AND NOT simulated"
                    " AND key LIKE %s",
                    (f"%:embed:{second.first}-{second.last}%",),
                ).fetchall()
            )
        assert stored == [(new.id,)]  # embedded again with the new model, stored in the new space only
        assert in_old == len(ids)  # nothing of this batch went to the space searches left
        # Both calls were billed by the vendor: both are in the ledger, each at its own model's price.
        assert len(large.calls) == 1 and len(vendor.calls) == 2
        assert sorted(keys.values()) == sorted([old.model, LARGE[0]])
        assert rt.router.target() == LARGE


def test_the_first_real_batches_at_once_make_one_space_active_without_deadlock(rt) -> None:
    with rt.pool.connection() as conn:
        small = vectors.ensure_space(conn, "text-embedding-3-small", 8, simulated=False)
        large = vectors.ensure_space(conn, "text-embedding-3-large", 8, simulated=False)
    with rt.pool.connection() as a, rt.pool.connection() as b:
        with a.transaction():
            a.execute("SELECT 1 FROM active_space FOR SHARE")  # a batch reading the row before claiming it
            outcome: list[object] = []

            def second() -> None:
                try:
                    with b.transaction():
                        spaces.check_writable(b, small)
                    outcome.append("stored")
                except Exception as exc:  # noqa: BLE001  (the test reports what the second batch met)
                    outcome.append(exc)

            thread = threading.Thread(target=second)
            thread.start()
            spaces.check_writable(a, small)  # both claim the empty row: one waits, none deadlocks
        thread.join(timeout=30)
        assert outcome == ["stored"]
        assert spaces.active(a).space_id == small.id
        # A batch made for another real space than the active one stores nothing there.
        with pytest.raises(spaces.SpaceSwitched), a.transaction():
            spaces.check_writable(a, large)
