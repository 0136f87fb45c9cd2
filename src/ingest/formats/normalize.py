"""What clean text looks like, decided in one place for every format.

NFC; line breaks become `\\n`; exotic spaces become plain spaces; control characters (except `\\n`
and `\\t`), zero-width characters, soft hyphens and non-characters are dropped. Prose additionally
has whitespace runs collapsed, lines trimmed and blank lines removed; code keeps its indentation.
One regex pass finds the rare odd characters; the rest is C-speed string methods.
"""

from __future__ import annotations

import re
import unicodedata

_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_SPACES = "\u00a0\u1680\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))
_DROPPED = "\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u00ad\u180e\u200b\u2060\ufeff\ufffe\uffff"
_ODD = re.compile(f"[{_BREAKS}{_SPACES}{_DROPPED}]")
_BREAK_SET = frozenset(_BREAKS)
_SPACE_SET = frozenset(_SPACES)
_SPACE_RUNS = re.compile(" {2,}")
_BLANK_LINES = re.compile("\n{2,}")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
# Anything a reader would see: not whitespace, not an invisible format or control character.
_VISIBLE = re.compile("[^\\s\x00-\x1f\x7f-\x9f\u00ad\u180e\u200b-\u200f\u2060\ufeff\ufffe\uffff]")


def _replace(match: re.Match[str]) -> str:
    char = match.group()
    return "\n" if char in _BREAK_SET else " " if char in _SPACE_SET else ""


def strip_controls(text: str) -> str:
    """Line breaks unified and invisible junk removed; layout untouched (for parsers' input)."""
    return _ODD.sub(_replace, text.replace("\r\n", "\n"))


def _nfc(text: str) -> str:
    # The check is far cheaper than normalising text that is already NFC (nearly all text is).
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def prose(text: str) -> str:
    """One paragraph-like unit: whitespace runs collapsed, lines trimmed, no blank lines inside.

    Whole-string operations only (no list of lines): a paragraph of millions of short lines
    must cost a few copies of its text, not an object per line.
    """
    # After strip_controls the only whitespace left is space, tab and newline.
    text = strip_controls(text).replace("\t", " ")
    if "  " in text:
        text = _SPACE_RUNS.sub(" ", text)
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    if "\n\n" in text:
        text = _BLANK_LINES.sub("\n", text)
    text = text.strip(" \n")
    return text if text.isascii() else _nfc(text)


def code(text: str) -> str:
    """Preformatted text: indentation and tabs kept, trailing spaces and outer blank lines removed."""
    return _nfc(_TRAILING.sub("", strip_controls(text)).strip("\n"))


def has_visible(text: str) -> bool:
    return _VISIBLE.search(text) is not None
