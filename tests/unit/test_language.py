"""Which text search configuration reads a text; CJK runs as bigrams."""

from __future__ import annotations

import pytest

from ingest import language


@pytest.mark.parametrize(
    ("text", "config"),
    [
        (
            "The licence is granted to you for the life of the copyright, and it is not transferable.",
            "english",
        ),
        ("Le chat est sur la table et les enfants sont dans le jardin avec leur mère.", "french"),
        ("Der Hund ist nicht in dem Haus, und die Katze sitzt auf dem Dach mit einer Maus.", "german"),
        ("El perro está en la casa y los niños juegan con su madre en el jardín.", "spanish"),
        ("x = np.zeros((3, 4)); y = x.T @ x; print(y.shape)", "simple"),
        ("機械学習は人工知能の一分野であり、データから学習する。", "simple"),
        ("", "simple"),
    ],
)
def test_detect(text: str, config: str) -> None:
    assert language.detect(text) == config


def test_every_detected_config_is_read_at_query_time() -> None:
    assert {"english", "french", "german", "simple"} <= set(language.CONFIGS)


def test_cjk_runs_become_bigrams_and_other_text_is_left_alone() -> None:
    assert language.search_text("機械学習 and more") == " 機械 械学 学習  and more"
    assert language.search_text("plain English") is None
    # A query's bigrams are the document's: any two adjacent characters of it match.
    doc = set(language.search_text("人工知能の研究").split())
    assert set(language.search_text("知能").split()) <= doc
