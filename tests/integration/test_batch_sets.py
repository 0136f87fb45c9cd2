"""A batch of small documents is parsed, stored, charged and completed set-based: a few statements for the
whole batch instead of dozens per document, with every guarantee of the per-document path kept (one copy
of each chunk and vector and one charge per call after a redelivery; a document without text fails alone)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import psycopg
import pytest
from typer.testing import CliRunner

from ingest.cli.main import app
from ingest.config import Settings
from ingest.leases import PARSE
from ingest.services.submit import Submitted, submit_files
from ingest.store.users import ensure_user
from tests import hostile_inputs
from tests.integration.test_batches import document_states, wait_for, write_small
from workers import batch_parse, leasing, messages
from workers.inprocess import serving
from workers.runtime import Runtime

runner = CliRunner()


class Statements:
    """Counts the statements this process sends (execute, executemany, COPY) while it is on."""

    def __init__(self) -> None:
        self.count = 0
        self.on = False
        self._lock = threading.Lock()

    def wrap(self, original: Any) -> Any:
        def counted(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            if self.on:
                with self._lock:
                    self.count += 1
            return original(cursor, *args, **kwargs)

        return counted


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[Statements]:
    counter = Statements()
    for name in ("execute", "executemany", "copy"):
        monkeypatch.setattr(psycopg.Cursor, name, counter.wrap(getattr(psycopg.Cursor, name)))
    yield counter


def test_a_folder_of_small_documents_takes_a_few_statements_each(
    settings: Settings, tmp_path: Path, statements: Statements
) -> None:
    paths = write_small(tmp_path / "notes", 120)
    with Runtime.open(settings) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")
        with serving(rt, threads=2):
            statements.on = True
            submit_files(rt, paths, user=user)
            statements.on = False
            wait_for(rt, lambda s: s == "completed", len(paths))
            statements.on = True
        statements.on = False
        with rt.pool.connection() as conn:
            attempts = Counter(a for (a,) in conn.execute("SELECT attempts FROM jobs"))
            parses = conn.execute("SELECT count(*) FROM cost_entries WHERE stage = 'parse'").fetchone()[0]
    assert attempts == {1: len(paths)}  # every document claimed once, by its batch
    assert parses == len(paths)  # one (shadow) parse charge each
    # The per-document path sends about 45 statements a document (admission, parse, embed, completion);
    # the batch's set-based stages, a handful for the whole batch, and admission about 6 a document.
    assert statements.count / len(paths) < 12, statements.count


def test_a_document_without_text_fails_alone_inside_a_batch_with_its_reason(
    ingest_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "notes"
    write_small(folder, 8)
    # A well-formed Word file without a paragraph: it passes admission and parses, to no text at all.
    (folder / "blank.docx").write_bytes(hostile_inputs.docx(hostile_inputs.document_xml([])))
    added = runner.invoke(app, ["add", str(folder)], catch_exceptions=False)
    assert added.exit_code == 1
    assert "8 completed" in added.stdout and "1 failed" in added.stdout

    with Runtime.open(Settings(_env_file=None)) as rt:
        states = document_states(rt)
        with rt.pool.connection() as conn:
            parse_charges = conn.execute(
                "SELECT count(*) FROM cost_entries WHERE stage = 'parse' AND state = 'charged'"
            ).fetchone()[0]
    failed = [s for s in states.values() if s[0] == "failed"]
    assert len(failed) == 1 and failed[0][2:] == (0, 0, 0)
    assert "no extractable text" in (failed[0][1] or "")
    assert parse_charges == 8  # a parse that failed is not charged; each of the others once


def test_a_batch_redelivered_after_its_chunks_were_stored_embeds_once_and_charges_once(
    settings: Settings, tmp_path: Path
) -> None:
    paths = write_small(tmp_path / "notes", 10)
    with Runtime.open(settings) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, "ada")
        job_ids = [s.job_id for s in submit_files(rt, paths, user=user) if isinstance(s, Submitted)]
        # A first delivery parses and stores every document's chunks, then its worker dies: its leases
        # are given up (as a dead process's lapse) before anything is embedded.
        held = leasing.take_many(rt, job_ids, PARSE)
        parser = batch_parse.mock_parser(rt)
        assert parser is not None
        first = batch_parse.parse_batch(rt, parser, held)
        assert sorted(first.parsed) == sorted(job_ids) and not first.failed
        leasing.release(rt, *held.values())
        with rt.pool.connection() as conn:
            stored = dict(conn.execute("SELECT document_id, count(*) FROM chunks GROUP BY document_id"))
        # The redelivery (the same message, taken up again).
        message = dramatiq.Message(
            queue_name=messages.INGEST_QUEUE,
            actor_name=messages.INGEST_BATCH,
            args=([str(job_id) for job_id in job_ids],),
            kwargs={},
            options={},
        )
        with serving(rt, threads=1):
            messages.started_broker().enqueue(message)
            wait_for(rt, lambda s: s == "completed", len(paths))
        states = document_states(rt)
        with rt.pool.connection() as conn:
            charges = Counter(
                (doc, stage)
                for doc, stage in conn.execute(
                    "SELECT document_id, stage FROM cost_entries WHERE state = 'charged'"
                )
            )
            attempts = {a for (a,) in conn.execute("SELECT attempts FROM jobs")}
    for doc, (status, _, n_chunks, embedded, vectors) in states.items():
        assert status == "completed"
        assert n_chunks == stored[doc] and embedded == vectors == n_chunks  # one copy of each, no more
        assert charges[(doc, "parse")] == 1 and charges[(doc, "embed")] == 1  # not parsed twice
    # Claimed by both deliveries, then by its own message: a document chunked by an earlier delivery goes
    # on alone (workers.batch), where its embed leases keep a re-send from calling the vendor twice.
    assert attempts == {3}
