"""`ingest costs`, `ingest budget set` and `ingest add --estimate` as a user runs them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import structlog
from typer.testing import CliRunner

from costs.estimate import quote_file, sum_quotes
from costs.money import fmt_usd
from costs.prices import DEFAULT_PRICES
from ingest.cli.main import app
from ingest.config import Settings

runner = CliRunner()
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    # The CLI points structlog at the runner's stderr, which is closed after the command.
    yield
    structlog.reset_defaults()


def ingest(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_budget_set_then_costs_json(ingest_env: dict[str, str]) -> None:
    assert (
        ingest("budget", "set", "0.5", "--service", "openai").stdout.strip()
        == "openai: daily limit $0.500000"
    )
    assert ingest("budget", "set", "2").exit_code == 0
    shown = ingest("costs", "--json")
    assert shown.exit_code == 0, shown.stderr
    zero = {"spent_usd": "0.000000", "reserved_usd": "0.000000", "simulated_usd": "0.000000"}
    assert json.loads(shown.stdout) == {
        "date": datetime.now(UTC).date().isoformat(),
        "timezone": "UTC",
        "services": {
            "llamaparse": {**zero, "limit_usd": None},
            "openai": {**zero, "limit_usd": "0.500000"},
        },
        "total": {**zero, "limit_usd": "2.000000"},
        "stages": {},
        "batch_saved": {"chunks": 0, "tokens": 0, "saved_usd": "0.000000", "simulated_usd": "0.000000"},
    }


def test_costs_table_and_a_past_day(ingest_env: dict[str, str]) -> None:
    table = ingest("costs")
    assert table.exit_code == 0
    assert "llamaparse" in table.stdout and "openai" in table.stdout and "none" in table.stdout
    past = json.loads(ingest("costs", "--date", "2020-02-29", "--json").stdout)
    assert past["date"] == "2020-02-29"


@pytest.mark.parametrize(
    "args",
    [
        ("budget", "set", "lots"),
        ("budget", "set", "--", "-1"),
        ("budget", "set", "0.0000000000001"),
        ("budget", "set", "1", "--service", "gemini"),
        ("costs", "--date", "yesterday"),
    ],
)
def test_bad_input_is_one_line_on_stderr(ingest_env: dict[str, str], args: tuple[str, ...]) -> None:
    result = ingest(*args)
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_add_estimate_quotes_without_ingesting_or_calling_anyone(
    ingest_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the quote must not call anyone")

    with monkeypatch.context() as patched:
        patched.setattr(socket.socket, "connect", no_network)
        quoted = ingest("add", str(SAMPLES), "--estimate")
    assert quoted.exit_code == 0, quoted.stderr
    expected = sum_quotes(
        quote_file(p, settings=Settings(_env_file=None), prices=DEFAULT_PRICES)
        for p in sorted(SAMPLES.iterdir())
    )
    lines = quoted.stdout.splitlines()
    assert (
        f"llamaparse: {expected.pages} pages, {expected.credits} credits, ${fmt_usd(expected.parse_usd)}"
        in lines
    )
    assert f"openai: {expected.tokens} tokens, ${fmt_usd(expected.embed_usd)}" in lines
    assert f"total: 6 files, ${fmt_usd(expected.total_usd)}" in lines
    # Both prices: the Batch API's is half the endpoint's.
    assert expected.batch_embed_usd * 2 == expected.embed_usd
    assert f"openai Batch API (--when-cheapest): ${fmt_usd(expected.batch_embed_usd)}" in lines
    assert f"total with --when-cheapest: ${fmt_usd(expected.batch_total_usd)}" in lines
    with psycopg.connect(ingest_env["DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 0


def test_estimate_of_an_unreadable_file_fails_with_its_reason(
    ingest_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "photo.pdf"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    result = ingest("add", str(bad), "--estimate")
    assert result.exit_code == 1
    assert "not quoted" in result.stderr and "photo.pdf" in result.stderr


def test_a_mock_run_records_exactly_its_quote_as_shadow_cost(ingest_env: dict[str, str]) -> None:
    expected = sum_quotes(
        quote_file(p, settings=Settings(_env_file=None), prices=DEFAULT_PRICES)
        for p in sorted(SAMPLES.iterdir())
    )
    assert ingest("add", str(SAMPLES)).exit_code == 0
    report = json.loads(ingest("costs", "--json").stdout)
    assert report["services"]["llamaparse"]["simulated_usd"] == fmt_usd(expected.parse_usd)
    assert report["services"]["openai"]["simulated_usd"] == fmt_usd(expected.embed_usd)
    assert report["total"]["spent_usd"] == "0.000000"
    assert Decimal(report["stages"]["openai:embed"]["drift_usd"]) == 0
