from pathlib import Path

from ingest.config_docs import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_doc_lists_every_setting_as_the_code_defines_it() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md is stale: python -m ingest.config_docs > docs/configuration.md"
    )


def test_every_setting_is_described() -> None:
    from ingest.config import Settings

    undocumented = [n for n, f in Settings.model_fields.items() if not f.description]
    assert undocumented == []
