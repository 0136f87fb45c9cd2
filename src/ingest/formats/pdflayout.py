"""Turning PDF text lines into paragraphs: pure geometry and text heuristics, no PDFium calls.

PDFium gives lines in content order, without blank lines between paragraphs. A new paragraph
starts on a change of font size or of monospace, extra vertical space, a jump up (next column),
a bullet, or after a short line (one ending well before the column's right edge) that ends a
sentence or is followed by an indented or capitalised line. Monospaced runs become code blocks.

Running headers and footers (the top or bottom line of a page, digits ignored, seen on three or
more pages) are removed. A paragraph cut by a page break is joined back when the next page
continues it in lower case.

Hyphens: PDFium marks a hyphen it judged a line-end break with U+FFFE and joins the two lines.
The hyphen is kept when either side is not a lower-case letter, inside URLs and paths, in a
compound chain, or when the document elsewhere spells the word with the hyphen more often than
without ("quasi-particle" stays, "docu-ment" becomes "document").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from statistics import median

SOFT_HYPHEN = "\ufffe"
_BULLETS = ("•", "◦", "▪", "‣", "●", "○", "■", "□", "–", "—", "∗")
_SENTENCE_END = re.compile(r"[.!?:;][\"'”’)\]]*$")
_OPEN_END = re.compile(r"[,;\-]$")
_TOKEN = re.compile(r"\w+(?:-\w+)*")
_WORD_END = re.compile(r"\w+$")
_WORD_START = re.compile(r"\w*")
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
_BUCKET = 20.0  # points: lines whose left edges fall in neighbouring buckets share a column
_WINDOW = 64  # characters looked at on each side of a soft hyphen


@dataclass(frozen=True, slots=True)
class Line:
    """One text line of a page; coordinates in PDF points, y growing upwards."""

    text: str
    left: float  # left edge of the first character
    right: float  # right edge of the last character
    top: float  # top of the first character (font ascent)
    first_bottom: float  # bottom of the first character (font descent)
    bottom: float  # bottom of the last character: lower when PDFium joined a hyphenated next line
    size: float  # font size in points
    mono: bool  # set in a monospaced font


@dataclass(slots=True)
class Paragraph:
    page: int  # 1-based
    kind: str  # paragraph | code
    lines: list[Line]


def document_blocks(pages: list[list[Line]]) -> list[tuple[int, str, str]]:
    """(page, kind, text) for every paragraph of the document, in reading order."""
    pages = drop_running_lines(pages)
    merged: list[Paragraph] = []
    for number, lines in enumerate(pages, start=1):
        for index, paragraph in enumerate(page_paragraphs(lines, number)):
            if index == 0 and merged and _continues(merged[-1], paragraph):
                merged[-1].lines.extend(paragraph.lines)
            else:
                merged.append(paragraph)
    texts = [_join(p) for p in merged]
    resolve = dehyphenator("\n".join(texts))
    return [(p.page, p.kind, resolve(text)) for p, text in zip(merged, texts, strict=True)]


def _running_key(line: Line) -> str:
    return _SPACES.sub(" ", _DIGITS.sub("#", line.text.casefold())).strip()


def drop_running_lines(pages: list[list[Line]]) -> list[list[Line]]:
    edges = [_edge_lines(lines) for lines in pages]
    seen = Counter(key for lines in edges for key in {_running_key(line) for line in lines})
    threshold = max(3, len(pages) // 2)
    running = {key for key, count in seen.items() if count >= 3 and ("#" in key or count >= threshold)}
    if not running:
        return pages
    return [
        [line for line in lines if not (line in edge and _running_key(line) in running)]
        for lines, edge in zip(pages, edges, strict=True)
    ]


def _edge_lines(lines: list[Line]) -> list[Line]:
    if not lines:
        return []
    return [max(lines, key=lambda line: line.top), min(lines, key=lambda line: line.bottom)]


def page_paragraphs(lines: list[Line], page: int) -> list[Paragraph]:
    if not lines:
        return []
    steps = [
        prev.bottom - cur.first_bottom
        for prev, cur in pairwise(lines)
        if abs(prev.size - cur.size) < 0.5 and 0 < prev.bottom - cur.first_bottom < 3 * cur.size
    ]
    step = median(steps) if steps else None
    edges: dict[int, float] = {}
    for line in lines:
        bucket = int(line.left // _BUCKET)
        edges[bucket] = max(edges.get(bucket, line.right), line.right)
    paragraphs = [Paragraph(page, _kind(lines[0]), [lines[0]])]
    for prev, cur in pairwise(lines):
        if _starts_paragraph(prev, cur, step, edges):
            paragraphs.append(Paragraph(page, _kind(cur), [cur]))
        else:
            paragraphs[-1].lines.append(cur)
    return paragraphs


def _kind(line: Line) -> str:
    return "code" if line.mono else "paragraph"


def _column_right(edges: dict[int, float], left: float) -> float:
    bucket = int(left // _BUCKET)
    return max(edges.get(b, 0.0) for b in (bucket - 1, bucket, bucket + 1))


def _starts_paragraph(prev: Line, cur: Line, step: float | None, edges: dict[int, float]) -> bool:
    if prev.mono != cur.mono or abs(prev.size - cur.size) > 1.0:
        return True
    drop = prev.bottom - cur.first_bottom  # baseline distance; negative when cur is higher up
    if drop < -0.5 * cur.size or (step is not None and drop > 1.4 * step + 0.5):
        return True
    if prev.mono or abs(drop) < 0.3 * cur.size:
        return False  # code lines are all "short"; same baseline means the same visual line
    if cur.text.startswith(_BULLETS):
        return True
    if prev.right >= _column_right(edges, prev.left) - 2 * prev.size:
        return False  # prev runs to the right margin: the sentence goes on
    return bool(
        _SENTENCE_END.search(prev.text)
        or cur.left > prev.left + 0.5 * cur.size
        or (cur.text[:1].isupper() and not _OPEN_END.search(prev.text))
    )


def _continues(prev: Paragraph, cur: Paragraph) -> bool:
    """Whether `cur`, first on its page, carries on the last paragraph of the page before."""
    last = prev.lines[-1].text
    return (
        prev.kind == cur.kind == "paragraph"
        and cur.page == prev.page + 1
        and not _SENTENCE_END.search(last)
        and cur.lines[0].text[:1].islower()
    )


def _join(paragraph: Paragraph) -> str:
    if paragraph.kind == "code":
        return "\n".join(line.text for line in paragraph.lines)
    parts = [paragraph.lines[0].text]
    for line in paragraph.lines[1:]:
        prev = parts[-1]
        glued = prev.endswith(SOFT_HYPHEN) or (
            prev.endswith("-") and prev[-2:-1].isalnum() and line.text[:1].isalnum()
        )
        parts.append(line.text if glued else " " + line.text)
    return "".join(parts)


def dehyphenator(text: str) -> Callable[[str], str]:
    """A function resolving PDFium's soft hyphens, using the document's own spellings."""
    counts: Counter[str] = Counter()
    for token in _TOKEN.findall(text.replace(SOFT_HYPHEN, " ").casefold()):
        counts[token] += 1
        if "-" in token:
            parts = token.split("-")
            counts.update(f"{a}-{b}" for a, b in pairwise(parts))

    def resolve(text: str) -> str:
        if SOFT_HYPHEN not in text:
            return text
        pieces = text.split(SOFT_HYPHEN)
        out = [pieces[0]]
        for piece in pieces[1:]:
            left = out[-1][-_WINDOW:]
            left_token = left.rsplit(None, 1)[-1] if left.strip() else ""
            right = _WORD_START.match(piece, 0, _WINDOW).group()  # type: ignore[union-attr]  # \w* always matches
            out.append(_hyphen(left_token, right, counts) + piece)
        return "".join(out)

    return resolve


def _hyphen(left_token: str, right: str, counts: Counter[str]) -> str:
    word_match = _WORD_END.search(left_token)
    word = word_match.group() if word_match else ""
    if not word or not right or not (word[-1].islower() and right[0].islower()) or "/" in left_token:
        return "-"
    hyphenated, joined = f"{word}-{right}".casefold(), f"{word}{right}".casefold()
    if counts[hyphenated] > counts[joined] or ("-" in left_token[: -len(word)] and not counts[joined]):
        return "-"
    return ""
