"""`ingest reembed` as an operator runs it, against the OpenAI stand-in: the quote first (what the target's
embedding cache already holds is not paid for), refusals of bad input that change nothing, a run followed
to its switch, the status view, a rollback served from the kept space and the cache, and the drop."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from ingest.cli.main import app
from ingest.config import Settings

runner = CliRunner()
LARGE = "text-embedding-3-large/32"


def ingest(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False, terminal_width=200)
    assert result.exit_code == code, result.output + result.stderr
    return result.stdout + result.stderr


def write(folder: Path, name: str, topic: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(
        "\n\n".join(f"{topic} note {i}: how {topic} behave in spring and winter." for i in range(10))
    )
    return path


def rows(settings: Settings, query: str) -> list[tuple]:
    with psycopg.connect(settings.database_url or "") as conn:
        return conn.execute(query).fetchall()


def quoted(output: str) -> tuple[int, int, int, Decimal]:
    """(chunks, cached texts, tokens, dollars) from a quote."""
    m = re.search(
        r"(\d+) chunks to give a vector \(\d+ distinct texts, (\d+) from the cache\), (\d+) tokens to pay for: \$([0-9.]+)",
        output,
    )
    assert m, output
    return int(m[1]), int(m[2]), int(m[3]), Decimal(m[4])


def test_reembed_quotes_refuses_switches_rolls_back_and_drops(
    standins: object, settings: Settings, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("INGEST_OPENAI_EMBEDDING_DIMENSIONS", "64")
    monkeypatch.setenv("INGEST_CHUNK_TOKENS", "32")
    monkeypatch.setenv("INGEST_CHUNK_OVERLAP", "0")
    ingest("mode", "set", "real", "--service", "openai")
    docs = tmp_path / "docs"
    ingest("add", str(write(docs, "otters.txt", "otters")), str(write(docs, "herons.txt", "herons")))
    (chunks,) = rows(settings, "SELECT count(*) FROM chunks")[0]

    # Nothing to roll back, bad models and sizes, the space searches already read: refused, nothing changes.
    assert "no previous space" in ingest("reembed", "--rollback", "--yes", code=1)
    assert "no OpenAI price for model 'text-embedding-9'" in ingest(
        "reembed", "--model", "text-embedding-9", code=1
    )
    assert "between 1 and 4000" in ingest(
        "reembed", "--model", "text-embedding-3-large", "--dimensions", "5000", code=1
    )
    assert "already read" in ingest("reembed", "--model", "text-embedding-3-small", "--yes", code=1)
    assert "exactly one of" in ingest("reembed", "--status", "--rollback", code=1)
    assert "no re-embed has run" in ingest("reembed", "--status")

    estimate = ingest("reembed", "--model", "text-embedding-3-large", "--dimensions", "32", "--estimate")
    n, cached, tokens, usd = quoted(estimate)
    (expected_tokens,) = rows(settings, "SELECT sum(token_count) FROM chunks")[0]
    # Each chunk's text is distinct here: every token is paid for once, at text-embedding-3-large's $0.13/1M.
    assert (n, cached, tokens) == (chunks, 0, expected_tokens)
    assert usd == Decimal("0.13") * tokens / 1_000_000
    assert rows(settings, "SELECT count(*) FROM reembeds") == [(0,)]

    switched = ingest("reembed", "--model", "text-embedding-3-large", "--dimensions", "32", "--yes")
    assert f"every search now reads {LARGE}" in switched
    status = ingest("reembed", "--status")
    assert f"active space: {LARGE} ({chunks} chunks)" in status
    assert f"previous space: text-embedding-3-small/64 ({chunks} vectors kept" in status
    assert f"switched, {chunks}/{chunks} chunks" in status
    charged = rows(settings, "SELECT sum(amount_usd) FROM cost_entries WHERE stage = 'reembed'")[0][0]
    assert charged == usd  # the stand-in counts tokens as the quote does

    # A document deleted and added again gets new chunks: the old space's cache still holds their texts,
    # so the rollback's quote has them from the cache, for nothing.
    (otters,) = rows(settings, "SELECT id FROM documents WHERE filename = 'otters.txt'")[0]
    ingest("documents", "delete", str(otters))
    ingest("add", str(docs / "otters.txt"))
    n, cached, tokens, usd = quoted(ingest("reembed", "--rollback", "--estimate"))
    (otter_chunks,) = rows(
        settings,
        "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.filename = 'otters.txt'",
    )[0]
    assert (n, cached, tokens, usd) == (otter_chunks, otter_chunks, 0, Decimal(0))
    assert "every search now reads text-embedding-3-small/64" in ingest("reembed", "--rollback", "--yes")
    assert rows(settings, "SELECT sum(amount_usd) FROM cost_entries WHERE stage = 'reembed'")[0][0] == charged
    assert "rollback" in ingest("reembed", "--status")

    assert f"dropped the vectors of {LARGE}" in ingest("reembed", "--drop-previous")
    assert "no previous space to drop" in ingest("reembed", "--drop-previous", code=1)
    hits = ingest("search", "otters in winter", "-k", "1")
    assert "otters.txt" in hits
