"""Many small documents at once: admitted a batch at a time, taken through parse, chunk and embed together
(one message, shared embedding requests, one storing transaction), each with its own verdict and charge."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from pydantic import SecretStr
from typer.testing import CliRunner

from costs import ledger
from costs.estimate import embed_tokens
from ingest.cli.main import app
from ingest.config import Settings
from ingest.search_mode import SearchMode
from ingest.services import search as search_service
from ingest.services.submit import Submitted, submit_files
from ingest.store.users import ensure_user
from router.decide import Mode
from tests import hostile_inputs
from workers import messages
from workers.inprocess import serving
from workers.runtime import Runtime

runner = CliRunner()
WORDS = "amber birch canyon delta ember fjord glacier harbor island jungle kelp lagoon meadow nectar".split()


def write_small(folder: Path, count: int, *, words: int = 40) -> list[Path]:
    """`count` distinct small text files (one chunk each at the default chunk size)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        text = " ".join(f"{WORDS[(n * 5 + i) % len(WORDS)]}{(n * 31 + i) % 97}" for i in range(words))
        path = folder / f"note-{n:03d}.txt"
        path.write_text(f"Note {n}.\n\n{text}\n")
        paths.append(path)
    return paths


def ledger_rows(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT document_id, service, state, simulated, amount_usd, usage FROM cost_entries"
        ).fetchall()


def document_states(rt: Runtime) -> dict[Any, tuple[str, str | None, int, int, int]]:
    """Per document: status, error, chunks, chunks marked embedded, vectors stored."""
    with rt.pool.connection() as conn:
        tables = [t for (t,) in conn.execute("SELECT table_name FROM embedding_spaces")]
        vectors = (
            " + ".join(
                f"(SELECT count(*) FROM {t} v JOIN chunks c2 ON c2.id = v.chunk_id WHERE c2.document_id = d.id)"
                for t in tables
            )
            or "0"
        )
        rows = conn.execute(
            "SELECT d.id, d.status, d.error, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id),"
            " (SELECT count(space_id) FROM chunks c WHERE c.document_id = d.id),"
            f" {vectors} FROM documents d"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_a_folder_of_small_files_shares_messages_and_embedding_requests(
    ingest_env: dict[str, str], tmp_path: Path
) -> None:
    files = write_small(tmp_path / "notes", 40)
    added = runner.invoke(app, ["add", str(tmp_path / "notes")], catch_exceptions=False)
    assert added.exit_code == 0, added.output
    assert "40 completed" in added.stdout

    with Runtime.open(Settings(_env_file=None)) as rt:
        states = document_states(rt)
        rows = ledger_rows(rt)
        with rt.pool.connection() as conn:
            batch_messages = conn.execute("SELECT count(*) FROM message_deliveries").fetchone()[0]
    assert len(states) == len(files)
    for status, _, n_chunks, embedded, stored in states.values():
        assert status == "completed" and n_chunks >= 1 and embedded == stored == n_chunks
    embeds = [(doc, usage) for doc, service, _, _, _, usage in rows if service == "openai"]
    # One embedding charge per document (its share of the shared call), covering exactly its chunks' tokens.
    assert sorted(doc for doc, _ in embeds) == sorted(states)
    # The 40 small documents, 5 of the user's 32 slots (8 small documents a slot), were admitted at once
    # and went as 4 messages (one per worker thread); each message sent one embedding request for all its
    # documents.
    assert batch_messages == 4
    assert sum(usage["requests"] for _, usage in embeds) == batch_messages


def test_a_bad_file_inside_a_batch_fails_alone_with_its_reason(
    ingest_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "notes"
    write_small(folder, 12)
    # A Word file whose text part is not XML: it passes the cheap checks, and its parse fails.
    (folder / "broken.docx").write_bytes(hostile_inputs.docx(b"<w:document><w:body><w:p>unclosed"))
    added = runner.invoke(app, ["add", str(folder)], catch_exceptions=False)
    assert added.exit_code == 1
    assert "12 completed" in added.stdout and "1 failed" in added.stdout
    assert "not well-formed XML" in added.stdout

    with Runtime.open(Settings(_env_file=None)) as rt:
        states = document_states(rt)
    failed = [s for s in states.values() if s[0] == "failed"]
    assert len(failed) == 1 and "not well-formed XML" in (failed[0][1] or "")
    assert failed[0][2:] == (0, 0, 0)  # nothing of it is left to search


def test_a_budget_running_out_mid_batch_defers_the_rest_without_overshoot(
    settings: Settings,
    tmp_path: Path,
    metered_runtime: Callable[..., AbstractContextManager[Any]],
) -> None:
    paths = write_small(tmp_path / "notes", 10, words=30)
    with metered_runtime(settings) as (rt, vendor, _clock):
        rt.router.modes.set(Mode.REAL, ("openai",))
        one = rt.router.meter.embed_charge(embed_tokens([p.read_text() for p in paths[:1]])).usd
        limit = one * Decimal("4.5")  # room for about four documents' shares, not ten
        with rt.pool.connection() as conn:
            ledger.set_limit(conn, "openai", limit)
            user = ensure_user(conn, "ada")
        with serving(rt, threads=1):
            submitted = submit_files(rt, paths, user=user)
            assert all(isinstance(s, Submitted) for s in submitted)
            wait_for(rt, lambda s: s in ("completed", "deferred"), len(paths))
        states = document_states(rt)
        rows = ledger_rows(rt)
        with rt.pool.connection() as conn:
            reasons = dict(
                conn.execute("SELECT document_id, error FROM jobs WHERE status = 'deferred'").fetchall()
            )

    completed = [d for d, s in states.items() if s[0] == "completed"]
    deferred = [d for d, s in states.items() if s[0] == "deferred"]
    assert completed and deferred and len(completed) + len(deferred) == len(paths)
    real = [
        (doc, state, amount)
        for doc, service, state, simulated, amount, _ in rows
        if service == "openai" and not simulated
    ]
    assert sum(amount for _, _, amount in real) <= limit  # never overshot
    assert {doc for doc, state, _ in real if state == "charged"} == set(completed)
    assert all(state != "reserved" for _, state, _ in real)  # every refused or unused share went back
    for doc in deferred:
        assert states[doc][3:] == (0, 0) and "budget" in reasons[doc]
    assert len(vendor.calls) == 1  # the documents reserved before the refusal shared one call


def wait_for(rt: Runtime, final: Callable[[str], bool], expected: int, timeout: float = 120) -> None:
    done = threading.Event()

    def settled() -> bool:
        with rt.pool.connection() as conn:
            statuses = [s for (s,) in conn.execute("SELECT status FROM jobs")]
        return len(statuses) == expected and all(final(s) for s in statuses)

    for _ in range(int(timeout / 0.1)):
        if settled():
            return
        done.wait(0.1)
    pytest.fail("jobs did not settle")


def test_a_search_during_a_bulk_load_never_sees_a_half_stored_document(
    settings: Settings, tmp_path: Path
) -> None:
    paths = write_small(tmp_path / "notes", 60)
    seen: list[tuple[Any, int, int]] = []
    stop = threading.Event()
    with Runtime.open(settings) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")

        def search_while_loading() -> None:
            while not stop.is_set():
                for mode in (SearchMode.VECTOR, SearchMode.KEYWORD):
                    for hit in search_service.search(rt, user, "amber birch canyon", top_k=20, mode=mode):
                        with rt.pool.connection() as conn:
                            total, embedded = conn.execute(
                                "SELECT count(*), count(space_id) FROM chunks WHERE document_id = %s",
                                (hit.document_id,),
                            ).fetchone()
                        seen.append((hit.document_id, total, embedded))

        with serving(rt, threads=2):
            searcher = threading.Thread(target=search_while_loading)
            searcher.start()
            try:
                submit_files(rt, paths, user=user, batch=16)
                wait_for(rt, lambda s: s == "completed", len(paths))
            finally:
                stop.set()
                searcher.join()
    assert seen, "no search ran while loading"
    assert all(total > 0 and embedded == total for _, total, embedded in seen)


def test_a_batch_delivered_a_third_time_goes_on_as_its_documents_own_messages(
    settings: Settings, tmp_path: Path
) -> None:
    paths = write_small(tmp_path / "notes", 6)
    with Runtime.open(settings) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")
        submitted = [s for s in submit_files(rt, paths, user=user) if isinstance(s, Submitted)]
        job_ids = [str(s.job_id) for s in submitted]
        message = dramatiq.Message(
            queue_name=messages.INGEST_QUEUE,
            actor_name=messages.INGEST_BATCH,
            args=(job_ids,),
            kwargs={},
            options={},
        )
        with rt.pool.connection() as conn:  # its worker died under it twice already
            conn.execute(
                "INSERT INTO message_deliveries (message_id, deliveries) VALUES (%s, 2)",
                (message.message_id,),
            )
        with serving(rt, threads=2):  # a fresh in-process broker: only this message is on it
            messages.started_broker().enqueue(message)
            wait_for(rt, lambda s: s == "completed", len(paths))
        with rt.pool.connection() as conn:
            deliveries = dict(
                conn.execute("SELECT message_id, deliveries FROM message_deliveries").fetchall()
            )
            attempts = {a for (a,) in conn.execute("SELECT attempts FROM jobs")}
    assert deliveries.pop(message.message_id) == 3  # taken up once more, and split instead of run
    assert len(deliveries) >= len(paths)  # each document's own parse_document (and its embed_chunks)
    assert attempts == {1}  # each document claimed once: by its own message, not by the batch


@pytest.mark.parametrize(("key", "batched"), [(None, True), ("llx-test-never-called", False)])
def test_documents_that_may_be_parsed_by_the_vendor_are_sent_alone(
    settings: Settings, tmp_path: Path, key: str | None, batched: bool
) -> None:
    """A LlamaParse parse waits on the vendor; in a batch those waits would add up under one message's time
    limit and hold every other document back (a real-mode batch of four stalled past 150 s)."""
    if key is not None:
        settings = settings.model_copy(update={"llama_cloud_api_key": SecretStr(key)})
    paths = write_small(tmp_path / "notes", 6)
    with Runtime.open(settings) as rt:
        rt.router.modes.set(Mode.HYBRID, ("llamaparse",))
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")
        submit_files(rt, paths, user=user)  # no worker runs: the messages wait on the broker
        broker = messages.started_broker()
        assert isinstance(broker, StubBroker)
        queued = [dramatiq.Message.decode(m) for m in list(broker.queues[messages.INGEST_QUEUE].queue)]
    names = {m.actor_name for m in queued}
    if batched:
        assert names == {messages.INGEST_BATCH} and sum(len(m.args[0]) for m in queued) == len(paths)
    else:
        assert names == {messages.PARSE_DOCUMENT} and len(queued) == len(paths)
