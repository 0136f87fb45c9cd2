"""Bytes to text for the text formats, and the test of whether bytes are text at all.

Bytes are binary, not text, when more than 2% are control bytes (NUL and the like): a text file
has next to none, compressed or executable data about 10%. Below that, a few NULs are removed
and the text kept, with a warning.

Encoding: a byte-order mark decides (UTF-8, UTF-16, UTF-32); otherwise UTF-8, unless an HTML page
declares another charset. Legacy encodings are not guessed: in undeclared text a few invalid
UTF-8 sequences become U+FFFD (with a warning counting them), but text with more than 20% of
its bytes invalid is refused as not UTF-8, since replacing most of its letters would index noise.
"""

from __future__ import annotations

import codecs

from ingest.errors import UnsupportedType

MAX_CONTROL_RATIO = 0.02
MAX_INVALID_RATIO = 0.20

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# C0 controls other than tab, LF, VT, FF, CR and ESC (ANSI colour in logs), plus DEL.
_CONTROL_BYTES = bytes([*range(0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_CONTROL_CHARS = str.maketrans("", "", _CONTROL_BYTES.decode("latin-1"))


def bom(data: bytes) -> tuple[str, int] | None:
    """The encoding a byte-order mark announces and the mark's length."""
    for mark, encoding in _BOMS:
        if data.startswith(mark):
            return encoding, len(mark)
    return None


def _decode_prefix(data: bytes, encoding: str, complete: bool) -> str:
    # A head cut mid-character must not count as invalid: the incremental decoder holds it back.
    return codecs.getincrementaldecoder(encoding)("replace").decode(data, final=complete)


def binary_reason(data: bytes, complete: bool = True) -> str | None:
    """Why these bytes are not text, or None when they read as text.

    `complete` is False when `data` is only the head of a longer file.
    """
    found = bom(data)
    if found:
        encoding, skip = found
        text = _decode_prefix(data[skip:], encoding, complete)
        if not text:
            return None
        controls = len(text) - len(text.translate(_CONTROL_CHARS))
        return "binary data (control characters)" if controls > MAX_CONTROL_RATIO * len(text) else None
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    return "binary data (NUL and control bytes)" if controls > MAX_CONTROL_RATIO * len(data) else None


def require_utf8(data: bytes, text: str) -> int:
    """How many invalid sequences `text` (decoded from `data` with replacement) has; too many refuse it."""
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    if bad > MAX_INVALID_RATIO * len(data):
        raise UnsupportedType(
            f"the file is text in an encoding other than UTF-8 ({bad / len(data):.0%} of its bytes are "
            "invalid UTF-8); save it as UTF-8"
        )
    return bad


def decode(data: bytes, charset: str | None = None) -> tuple[str, list[str]]:
    """The text and any warnings; `charset` is an encoding the document declares (HTML meta)."""
    warnings: list[str] = []
    found = bom(data)
    if found:
        encoding, skip = found
        text = data[skip:].decode(encoding, errors="replace")
    elif charset and charset != "utf-8":
        text = data.decode(charset, errors="replace")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            bad = require_utf8(data, text)
            warnings.append(f"{bad} invalid UTF-8 byte sequence(s) replaced with U+FFFD")
    controls = len(text) - len(text.translate(_CONTROL_CHARS))
    if controls:
        warnings.append(f"{controls} NUL/control character(s) removed")
    return text, warnings
