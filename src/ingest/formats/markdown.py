"""Markdown: the source text kept, split into the blocks a reader sees.

ATX (`#`) and setext (`===`, `---`) headings set the heading path; fenced code stays whole as one
code block; a block indented four spaces is code unless it continues a list; each list item is a
block; a pipe table is one table block. HTML comments (invisible when rendered) are dropped, and
YAML front matter is kept as one paragraph without its `---` fences. Inline markup is left as is.
Everything is a linear scan over lines: no regex here can backtrack on a hostile long line.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from itertools import chain, islice

from ingest.parsed import ParsedDocument

from .blocks import BlockBuilder
from .limits import Limits
from .mediatypes import MARKDOWN
from .text import decode_text

# Several blank lines mean no more than one (in code too): cheap, and 100 MB of newlines stays cheap.
_BLANK_RUNS = re.compile(r"\n[ \t\n]*\n")
_LIST_ITEM = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_FRONT_MATTER_END = ("---", "...")
_FRONT_MATTER_MAX_LINES = 200
_MAX_BUFFERED_LINES = 10_000  # a longer paragraph or code block is emitted in parts


def extract(data: bytes, limits: Limits) -> ParsedDocument:
    text, warnings = decode_text(data)
    builder = BlockBuilder(limits.max_chars)
    builder.warnings.extend(warnings)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = _lines(_BLANK_RUNS.sub("\n\n", text))
    first = next(lines, "")
    head = [first]
    if first.strip() == "---":
        head += islice(lines, _FRONT_MATTER_MAX_LINES)
        end = next((i for i, line in enumerate(head) if i and line.strip() in _FRONT_MATTER_END), None)
        if end is not None:
            builder.add("\n".join(head[1:end]))
            head = head[end + 1 :]
    MarkdownReader(builder).read(chain(head, lines))
    return builder.document(MARKDOWN)


def _lines(text: str) -> Iterator[str]:
    # Lazily: splitting 100 MB of newlines into a list would cost gigabytes.
    for line in io.StringIO(text):
        yield line.removesuffix("\n")


def _atx(line: str) -> tuple[int, str] | None:
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3 or not stripped.startswith("#"):
        return None
    level = len(stripped) - len(stripped.lstrip("#"))
    rest = stripped[level:]
    if level > 6 or (rest and rest[0] not in " \t"):
        return None
    rest = rest.strip()
    closing = rest.rstrip("#")
    if closing != rest and (not closing or closing[-1] in " \t"):  # an optional closing "###"
        rest = closing.rstrip()
    return level, rest


def _fence(line: str) -> tuple[str, int] | None:
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3 or not stripped.startswith(("```", "~~~")):
        return None
    char = stripped[0]
    length = len(stripped) - len(stripped.lstrip(char))
    if char == "`" and "`" in stripped[length:]:
        return None  # backticks in the info string: inline code, not a fence
    return char, length


def _only(line: str, chars: str) -> bool:
    """Whether the line, spaces aside, is one of `chars` repeated (at least 3 times for rules)."""
    body = line.replace(" ", "").replace("\t", "")
    return len(body) >= 1 and body[0] in chars and body == body[0] * len(body)


def _is_table(lines: list[str]) -> bool:
    return (
        len(lines) >= 2
        and "|" in lines[0]
        and "-" in lines[1]
        and "|" in lines[1]
        and set(lines[1].strip()) <= set("|:- \t")
    )


def _indented(line: str) -> bool:
    return line.startswith(("    ", "\t"))


class MarkdownReader:
    def __init__(self, builder: BlockBuilder) -> None:
        self.builder = builder
        self.paragraph: list[str] = []
        self.in_comment = False
        self.last_kind = ""

    def read(self, lines: Iterable[str]) -> None:
        fence: tuple[str, int] | None = None
        code: list[str] = []
        for line in lines:
            if self.builder.full:
                return
            if fence:
                stripped = line.strip()
                if len(stripped) >= fence[1] and _only(stripped, fence[0]) and not _indented(line):
                    self._emit("\n".join(code), "code")
                    fence, code = None, []
                else:
                    code.append(line)
                    if len(code) >= _MAX_BUFFERED_LINES:
                        self._emit("\n".join(code), "code")
                        code = []
                continue
            if not self.in_comment and line[:1].isalpha() and "<!--" not in line:
                self._append(line)  # the common case: a line of prose, no syntax to look for
                continue
            line = self._uncomment(line)
            opened = _fence(line)
            heading = _atx(line)
            if opened:
                self._flush()
                fence = opened
            elif not line.strip():
                self._flush()
            elif heading:
                self._flush()
                self.builder.heading(heading[1], heading[0])
                self.last_kind = "heading"
            elif self.paragraph and _only(line, "=-") and not _LIST_ITEM.match(self.paragraph[0]):
                self.builder.heading(" ".join(self.paragraph), 1 if "=" in line else 2)
                self.paragraph = []
                self.last_kind = "heading"
            elif not self.paragraph and _only(line, "-*_") and len(line.strip()) >= 3:
                continue  # a thematic break
            else:
                self._append(line)
        if fence:
            self._emit("\n".join(code), "code")  # an unclosed fence runs to the end, as rendered
        self._flush()

    def _append(self, line: str) -> None:
        self.paragraph.append(line)
        if len(self.paragraph) >= _MAX_BUFFERED_LINES:
            self._flush()

    def _uncomment(self, line: str) -> str:
        kept: list[str] = []
        while line:
            if self.in_comment:
                end = line.find("-->")
                if end < 0:
                    break
                line, self.in_comment = line[end + 3 :], False
            else:
                start = line.find("<!--")
                if start < 0:
                    kept.append(line)
                    break
                kept.append(line[:start])
                line, self.in_comment = line[start + 4 :], True
        return "".join(kept)

    def _flush(self) -> None:
        lines, self.paragraph = self.paragraph, []
        if not lines:
            return
        if all(_indented(line) for line in lines) and self.last_kind != "list":
            self._emit("\n".join(line[4:] if line.startswith("    ") else line[1:] for line in lines), "code")
        elif _is_table(lines):
            rows = [lines[0], *lines[2:]]
            self._emit(
                "\n".join(" | ".join(c.strip() for c in r.strip().strip("|").split("|")) for r in rows),
                "table",
            )
        elif _LIST_ITEM.match(lines[0]):
            item: list[str] = []
            for line in lines:
                if item and _LIST_ITEM.match(line):
                    self._emit("\n".join(item), "list")
                    item = []
                item.append(line)
            self._emit("\n".join(item), "list")
        elif self.last_kind == "list" and _indented(lines[0]):
            self._emit("\n".join(lines), "list")  # a further paragraph of the list item above
        else:
            self._emit("\n".join(lines), "paragraph")

    def _emit(self, text: str, kind: str) -> None:
        self.builder.add(text, kind=kind)
        self.last_kind = kind
