"""Both services in `real` mode, pointed at the one-port stand-in of `ingest mocks serve`: the sample folder
ingests end to end through the CLI and the official SDKs over loopback HTTP, `ingest verify` passes,
search finds the MANIFEST's facts as often as in mock mode, and the ledger is exactly the price of what
the stand-ins say they billed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.cli.main import app as cli
from ingest.config import Settings
from ingest.services.search import search
from ingest.store.users import ensure_user
from mocks.llamaparse_jobs import StandinState
from mocks.openai_api import Ledger
from workers.runtime import Runtime

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus-sample"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared sample corpus is not beside the repository"),
]


def ingest(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def facts_ranked_first(user_name: str) -> dict[str, bool]:
    """For each MANIFEST fact of a sample file: does a search for it rank its own document first?"""
    manifest = json.loads((CORPUS / "MANIFEST.json").read_text())
    with Runtime.open(Settings(_env_file=None)) as rt:
        with rt.pool.connection() as conn:
            user = ensure_user(conn, user_name)
            sha_of = dict(conn.execute("SELECT id, sha256 FROM documents WHERE owner_id = %s", (user.id,)))
        samples = set(sha_of.values())
        ranked = {}
        for entry in (e for e in manifest if e["sha256"] in samples):
            for fact in entry["facts"]:
                top = search(rt, user, fact, top_k=1)
                ranked[fact] = bool(top) and sha_of[top[0].document_id] == entry["sha256"]
    return ranked


def test_samples_ingest_in_real_mode_against_the_standins_as_well_as_in_mock_mode(
    standins: object,
    settings: Settings,
    openai_records: Callable[[object], Ledger],
    llamaparse_records: Callable[[object], StandinState],
    assert_ledger_is_what_the_standins_billed: Callable[..., None],
) -> None:
    # The same folder twice, by two users (each has their own copy): first in mock mode...
    assert "6 completed" in ingest("add", str(SAMPLES), "--user", "mocked")
    in_mock_mode = facts_ranked_first("mocked")
    assert openai_records(standins).requests == 0 and not llamaparse_records(standins).jobs

    # ...then with both services real, through the official SDKs and the stand-ins.
    ingest("mode", "set", "real")
    assert "6 completed" in ingest("add", str(SAMPLES), "--user", "real")
    assert "0 problems" in ingest("verify")

    with Runtime.open(Settings(_env_file=None)) as rt:
        with rt.pool.connection() as conn:
            real = ensure_user(conn, "real")
            rows = conn.execute(
                "SELECT id, parser, status FROM documents WHERE owner_id = %s", (real.id,)
            ).fetchall()
        prices = rt.router.meter.prices
    assert {(parser, status) for _, parser, status in rows} == {("llamaparse:cost_effective", "completed")}
    # Before any search: a search embeds its query with the real client too.
    assert_ledger_is_what_the_standins_billed(
        settings.database_url or "",
        standins,
        [doc_id for doc_id, _, _ in rows],
        prices,
        settings.openai_embedding_model,
    )

    in_real_mode = facts_ranked_first("real")
    assert in_real_mode.keys() == in_mock_mode.keys() and len(in_real_mode) >= 20
    missed = [fact[:60] for fact, first in in_real_mode.items() if not first]
    assert sum(in_real_mode.values()) >= sum(in_mock_mode.values()), missed
