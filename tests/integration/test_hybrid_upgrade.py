"""Hybrid mode with the OpenAI stand-in failing every request: documents still complete, in the mock space,
their chunks waiting for upgrade; a search reads one space only; once the stand-in recovers, the upgrade
job re-embeds them in the real space, paying once per batch, and nothing waits any more."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from uuid import UUID

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from starlette.types import ASGIApp
from typer.testing import CliRunner

from costs import ledger
from ingest.cli.main import app as cli
from ingest.config import Settings
from ingest.services import search as search_module
from ingest.services.health import check_all
from ingest.services.submit import submit_file
from ingest.store import documents, jobs, upgrades, vectors
from ingest.store.users import ensure_user
from mocks import openai_api
from mocks.faults import FaultPlan
from router.backoff import RetriesExhausted
from router.circuit import CircuitBreaker, State
from router.decide import Mode
from router.embedder_mock import MockEmbedder
from router.vendor_errors import ErrorClass
from tests.clocks import FakeClock
from workers.inprocess import serving as in_process_workers
from workers.parse_stage import parse_stage
from workers.runtime import Runtime
from workers.upgrade import upgrade_waiting

TOPICS = {
    "rivers.txt": "river delta estuary floodplain meander tributary sediment current",
    "mountains.txt": "mountain summit glacier ridge avalanche altitude granite valley",
}


@pytest.fixture
def hybrid(
    ingest_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    serving: Callable[[ASGIApp], AbstractContextManager[str]],
) -> Iterator[tuple[Runtime, object, FakeClock]]:
    app = openai_api.create_app(FaultPlan(rate_500=1.0))
    with serving(app) as base:
        for name, value in {
            "OPENAI_API_KEY": "sk-standin-key",
            "OPENAI_BASE_URL": f"{base}/v1",
            "INGEST_VENDOR_MAX_ATTEMPTS": "2",
            "INGEST_VENDOR_INITIAL_BACKOFF_S": "0.001",
            "INGEST_VENDOR_MAX_BACKOFF_S": "0.01",
            "INGEST_CIRCUIT_FAILURE_THRESHOLD": "2",
            "INGEST_CHUNK_TOKENS": "64",
            "INGEST_CHUNK_OVERLAP": "8",
            "INGEST_EMBED_BATCH_CHUNKS": "4",
        }.items():
            monkeypatch.setenv(name, value)
        with Runtime.open(Settings(_env_file=None)) as rt:
            clock = FakeClock(now=time.time())  # the circuit's cooldown passes when the test says so
            rt.router.circuits = CircuitBreaker(
                rt.router.circuits.store, rt.router.circuits.policy, clock=clock
            )
            rt.router.modes.set(Mode.HYBRID, ("openai",))
            yield rt, app, clock


def _ingest(rt: Runtime, folder: Path) -> list[UUID]:
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    jobs_: list[UUID] = []
    with in_process_workers(rt, threads=2):
        for name, words in TOPICS.items():
            text = "\n\n".join(f"Part {p} about {name[:-4]}. " + " ".join([words] * 6) for p in range(6))
            (folder / name).write_text(text)
            jobs_.append(submit_file(rt, folder / name, user=user).job_id)
        for _ in range(600):  # bounded: 60 s
            with rt.pool.connection() as conn:
                found = [jobs.get(conn, j) for j in jobs_]
            if all(j is not None and j.final for j in found):
                break
            time.sleep(0.1)
    assert [j.status for j in found if j] == ["completed"] * len(TOPICS), [j.error for j in found if j]
    return [j.document_id for j in found if j]


def _spaces_of_chunks(rt: Runtime) -> dict[str, int]:
    with rt.pool.connection() as conn:
        rows = conn.execute(
            "SELECT s.model, count(*) FROM chunks c JOIN embedding_spaces s ON s.id = c.space_id GROUP BY s.model"
        ).fetchall()
    return dict(rows)


def _waiting(rt: Runtime) -> int:
    with rt.pool.connection() as conn:
        return upgrades.count(conn)


def _searched_spaces(rt: Runtime, monkeypatch: pytest.MonkeyPatch, query: str) -> tuple[list[str], set[int]]:
    """The spaces one search read, and the chunks it found."""
    read: list[str] = []
    nearest = search_module.nearest

    def spy(conn, space, *args, **kwargs):  # type: ignore[no-untyped-def]
        read.append(space.model)
        return nearest(conn, space, *args, **kwargs)

    monkeypatch.setattr(search_module, "nearest", spy)
    with rt.pool.connection() as conn:
        user = ensure_user(conn, "ada")
    hits = search_module.search(rt, user, query, top_k=50)
    return read, {h.chunk_id for h in hits}


def _chunks_in(rt: Runtime, model: str) -> set[int]:
    with rt.pool.connection() as conn:
        rows = conn.execute(
            "SELECT c.id FROM chunks c JOIN embedding_spaces s ON s.id = c.space_id WHERE s.model = %s",
            (model,),
        ).fetchall()
    return {r[0] for r in rows}


def test_hybrid_falls_back_marks_for_upgrade_and_upgrades_when_the_service_recovers(
    hybrid: tuple[Runtime, object, FakeClock], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, app, clock = hybrid
    standin = app.state.ledger  # type: ignore[attr-defined]
    real_model, mock_model = rt.settings.openai_embedding_model, MockEmbedder.model

    # The stand-in fails every request: the documents complete anyway, in the mock space, all waiting.
    _ingest(rt, tmp_path)
    total = sum(_spaces_of_chunks(rt).values())
    assert _spaces_of_chunks(rt) == {mock_model: total}
    assert _waiting(rt) == total > 0
    assert standin.entries == [] and standin.errors[500] >= 2  # tried for real, refused every time
    assert rt.router.circuits.state("openai") is State.OPEN
    openai_health = next(c for c in check_all(rt).checks if c.name == "openai")
    assert openai_health.info["chunks_waiting_for_upgrade"] == total
    assert "circuit open" in openai_health.detail
    status = CliRunner().invoke(cli, ["status"])
    assert f"chunks waiting for upgrade to the real embedder: {total}" in status.stdout

    # While the circuit is open, search reads the mock space: what hybrid made is findable.
    read, found = _searched_spaces(rt, monkeypatch, "glacier summit")
    assert read == [mock_model] and found

    # The upgrade job with the service still down changes nothing.
    run = upgrade_waiting(rt)
    assert (run.upgraded, run.waiting) == (0, total)

    # The stand-in recovers and the cooldown passes; the budget has room for exactly one batch.
    app.state.injector.plan = FaultPlan()  # type: ignore[attr-defined]
    clock.now += rt.settings.circuit_cooldown_s
    with rt.pool.connection() as conn:
        first = upgrades.next_batch(conn, rt.settings.embed_batch_chunks)
        assert first is not None
        estimate = rt.router.meter.embed_charge(sum(c.token_count for c in first.chunks)).usd
        ledger.set_limit(conn, "openai", estimate)
    run = upgrade_waiting(rt)
    assert run.upgraded == len(first.chunks) and run.waiting == total - len(first.chunks)
    assert "budget" in run.stopped
    assert rt.router.circuits.state("openai") is State.CLOSED  # the probe succeeded
    assert _chunks_in(rt, real_model) == {c.id for c in first.chunks}

    # Both spaces hold vectors now; a search compares within the real one only.
    read, found = _searched_spaces(rt, monkeypatch, "river delta")
    assert read == [real_model]
    assert found and found <= _chunks_in(rt, real_model)

    # With budget again, the rest is upgraded; nothing waits and every chunk is in the real space.
    with rt.pool.connection() as conn:
        ledger.set_limit(conn, "openai", estimate * 1000)
    served_before = len(standin.entries)
    run = upgrade_waiting(rt)
    assert (run.waiting, run.stopped) == (0, "nothing waits")
    assert _waiting(rt) == 0
    assert _spaces_of_chunks(rt) == {real_model: total}
    with rt.pool.connection() as conn:
        mock_space = vectors.find_space(conn, mock_model, rt.settings.mock_embedding_dimensions)
        assert mock_space is not None
        assert conn.execute(f"SELECT count(*) FROM {mock_space.table_name}").fetchone()[0] == 0
        charges = conn.execute(
            "SELECT key, state, usage FROM cost_entries WHERE stage = 'upgrade' AND NOT simulated ORDER BY id"
        ).fetchall()
    # Costs: one charge per upgraded batch, each once, for what the stand-in served.
    upgrade_calls = standin.entries[served_before:]
    assert len(charges) == 1 + len(upgrade_calls)
    assert len({key for key, _, _ in charges}) == len(charges)
    assert {state for _, state, _ in charges} == {"charged"}
    assert sum(u["tokens"] for _, _, u in charges[1:]) == sum(e.prompt_tokens for e in upgrade_calls)
    assert "0 problems" in CliRunner().invoke(cli, ["verify"]).stdout
    assert "chunks waiting for upgrade to the real embedder: 0" in CliRunner().invoke(cli, ["status"]).stdout


def test_hybrid_parsing_falls_back_to_the_mock_and_records_the_parser(
    settings: Settings, tmp_path: Path
) -> None:
    class Down:
        name = "llamaparse:cost_effective"

        def parse(self, data: bytes, *, filename: str, media_type: str) -> object:
            raise RetriesExhausted("llamaparse", ErrorClass.TRANSIENT, 6, "HTTP 503: unavailable")

    settings = settings.model_copy(update={"llama_cloud_api_key": SecretStr("llx-not-a-key")})
    with Runtime.open(settings) as rt:
        rt.router._real_parser = Down()  # the router builds real clients lazily; this one is ours
        rt.router.modes.set(Mode.HYBRID, ("llamaparse",))
        (tmp_path / "note.txt").write_text("A short note about lighthouses and the sea.")
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")
        sub = submit_file(rt, tmp_path / "note.txt", user=user)
        before = REGISTRY.get_sample_value(
            "ingest_route_decisions_total", {"service": "llamaparse", "choice": "mock"}
        )
        assert parse_stage(rt, sub.job_id)
        after = REGISTRY.get_sample_value(
            "ingest_route_decisions_total", {"service": "llamaparse", "choice": "mock"}
        )
        with rt.pool.connection() as conn:
            doc = documents.get(conn, sub.document_id)
            entries = conn.execute(
                "SELECT simulated, state FROM cost_entries WHERE key = %s ORDER BY simulated",
                (f"{doc.id}:parse",),
            ).fetchall()
        assert doc is not None and doc.parser == "mock"  # which parser made the document
        assert entries == [(False, "released"), (True, "charged")]  # nothing billed for the failed call
        assert (after or 0) - (before or 0) == 1  # the fallback is a decision, counted
        assert rt.router.circuits.circuit("llamaparse").failures == 1
