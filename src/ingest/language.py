"""Which PostgreSQL text search configuration reads a text, and how CJK text is made searchable by word.

Detection is cheap on purpose: the share of a language's most common words among the first words of the
text. Each candidate is a snowball configuration PostgreSQL ships; a text where none of them reaches
`_MIN_SHARE` (another language, code, tables of numbers) gets 'simple' (lower-cased words, no stemming,
no stop words). CJK scripts have no spaces between words, and PostgreSQL's parser would read a whole run
as one word: a run becomes its overlapping character bigrams, the usual unit of CJK keyword search, so a
query's bigrams meet the document's.
"""

from __future__ import annotations

import re
from collections import Counter

FALLBACK = "simple"

# A few dozen of each language's most frequent words; words shared by several languages count for each.
_COMMON: dict[str, frozenset[str]] = {
    name: frozenset(words.split())
    for name, words in {
        "english": "the of and to in is that for it as with was on be by this are or from at which not an have"
        " but can if you all will has one their there been we they more when would",
        "french": "le la les de des du un une et est que qui dans pour pas sur au aux avec ce cette il elle"
        " sont par plus ne se ou mais nous vous leur été être",
        "german": "der die das und ist nicht ein eine zu den von mit sich des auf für im dem auch es an als"
        " wird werden oder aus bei nach wie sind kann",
        "spanish": "el la los las de del y en que es por un una para con no se su al lo como más pero sus le"
        " ya este esta son entre cuando muy",
        "italian": "il lo la gli le di del della e che è per un una in con non si sono da al alla come più"
        " ma anche questo questa nel nella",
        "portuguese": "o a os as de do da dos das e que em um uma para com não se no na por mais ao como"
        " mas foi ele ela são também",
        "dutch": "de het een en van is dat niet in op te zijn met voor er als aan ook maar om door bij dan"
        " wordt naar worden deze",
        "swedish": "och att det som en på är av för med till den har inte om ett var jag de sig men ska så"
        " kan från eller när",
        "russian": "и в не на что он с как это по но из у за от о же все так его она для бы только мы вы"
        " или был было уже",
    }.items()
}
# Every configuration `detect` can answer: a query is read with each, as its language is not known.
CONFIGS: tuple[str, ...] = (*_COMMON, FALLBACK)

_MIN_SHARE = 0.06
_SAMPLE_WORDS = 2000
_WORD = re.compile(r"[^\W\d_]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")


def detect(text: str) -> str:
    """The configuration for `text`: a snowball language when its common words show, else 'simple'."""
    # One-letter words say little (a variable, an initial) and would tip short texts to Spanish's "y".
    words = [w.casefold() for w in _WORD.findall(text[: _SAMPLE_WORDS * 12]) if len(w) > 1][:_SAMPLE_WORDS]
    cjk = sum(len(run) for run in _CJK.findall(text[: _SAMPLE_WORDS * 12]))
    if not words or cjk * 2 > sum(map(len, words)):
        return FALLBACK
    counts = Counter(words)
    shares = {name: sum(counts[w] for w in common) / len(words) for name, common in _COMMON.items()}
    best = max(shares, key=shares.__getitem__)
    return best if shares[best] >= _MIN_SHARE else FALLBACK


def search_text(text: str) -> str | None:
    """`text` with each CJK run written as its overlapping bigrams; None when it has no CJK run."""
    if not _CJK.search(text):
        return None
    return _CJK.sub(lambda run: " " + " ".join(_bigrams(run.group())) + " ", text)


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) < 2 else [run[i : i + 2] for i in range(len(run) - 1)]
