"""`ingest search` as a user runs it: modes, and hits that show their file, pages and headings in 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ingest.cli.main import app

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
runner = CliRunner()


def ingest(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False, terminal_width=80)


def test_search_modes_and_the_hits_table(ingest_env: dict[str, str]) -> None:
    added = ingest("add", str(SAMPLES / "carroll-wonderland.pdf"), str(SAMPLES / "docker-plugins-volume.md"))
    assert added.exit_code == 0, added.output

    question = "What does the Caterpillar ask Alice while smoking the hookah?"
    for mode in ("hybrid", "vector", "keyword"):
        found = ingest("search", question, "--mode", mode, "--json")
        assert found.exit_code == 0, found.output
        hits = json.loads(found.stdout)["results"]
        assert hits[0]["filename"] == "carroll-wonderland.pdf", mode
        assert isinstance(hits[0]["page_start"], int) and hits[0]["page_end"] >= hits[0]["page_start"]

    table = ingest("search", "VolumeDriver.Mount response Mountpoint", "-k", "3")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    assert "docker-plugins-volume.md" in table.stdout
    assert "/VolumeDriver.Mount" in table.stdout  # the heading path of the hit

    pdf = ingest("search", question, "-k", "1")
    assert "carroll-wonderland.pdf" in pdf.stdout
    assert any(word in pdf.stdout for word in ("p. ", "pp. "))  # its pages

    bad = runner.invoke(app, ["search", "x", "--mode", "fuzzy"])
    assert bad.exit_code != 0
    assert "fuzzy" in bad.output
