"""Opening ZIP containers (DOCX, ODT) without trusting them.

Everything is decided from the ZIP directory before any byte is inflated: how many entries
there are (read from the end-of-directory record, before `zipfile` builds one object per
entry), unsafe entry names (zip-slip), encryption, the declared size of each part we will read,
and the compression ratio of every large entry. Parts are then read with a hard cap on
the bytes inflated, whatever the directory claims. Nothing is ever extracted to disk.
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, BinaryIO

from ingest.errors import UnreadableDocument

from .source import Source, open_binary

MAX_ENTRIES = 10_000  # a Word document has tens of entries; a DOCX with many images a few hundred
MAX_RATIO = 100  # deflated XML rarely passes 20:1; bombs run at hundreds or thousands to one
RATIO_MIN_BYTES = 1024 * 1024  # tiny entries may compress absurdly well and are harmless
_CHUNK = 1024 * 1024
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_UNSAFE_NAME = re.compile(r"(^|/)\.\.(/|$)|^/|^[A-Za-z]:|[\\\x00-\x1f]")


def _declared_entries(fh: BinaryIO) -> int | None:
    """Entry count from the end-of-central-directory record (ZIP64 aware); None if there is none."""
    end = fh.seek(0, 2)
    start = max(0, end - (0xFFFF + 22))
    fh.seek(start)
    tail = fh.read()
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        return None
    count: int = struct.unpack_from("<H", tail, at + 10)[0]
    locator = at - 20
    if count == 0xFFFF and locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR:
        fh.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
        record = fh.read(40)
        if len(record) == 40 and record[:4] == _ZIP64_EOCD:
            count = struct.unpack_from("<Q", record, 32)[0]
    return count


@contextmanager
def open_zip(source: Source, label: str) -> Iterator[zipfile.ZipFile]:
    """The archive's directory, read only after its entry count is known to be sane."""
    fh = open_binary(source)
    try:
        entries = _declared_entries(fh)
        if entries is None:
            raise UnreadableDocument(f"the {label} is not a complete ZIP archive (truncated or corrupt)")
        if entries > MAX_ENTRIES:
            raise UnreadableDocument(
                f"the {label} holds {entries} ZIP entries, over the limit of {MAX_ENTRIES}"
            )
        try:
            archive = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as err:
            raise UnreadableDocument(f"the {label} has a corrupt ZIP directory ({err})") from None
        with archive:
            yield archive
    finally:
        fh.close()


def validate(archive: zipfile.ZipFile, parts: tuple[str, ...], max_bytes: int, label: str) -> None:
    """Refuse the archive unless `parts[0]` (required) and the other parts present are safe to read."""
    infos = archive.infolist()
    for info in infos:
        if _UNSAFE_NAME.search(info.filename):
            raise UnreadableDocument(
                f"the {label} holds an entry with an unsafe path ({info.filename!r}); refusing it"
            )
        if info.file_size >= RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size // max(info.compress_size, 1)
            raise UnreadableDocument(
                f"{info.filename} in the {label} is compressed {ratio}:1; refusing a likely zip bomb"
            )
    names = Counter(info.filename for info in infos)
    if parts[0] not in names:
        raise UnreadableDocument(f"the {label} has no {parts[0]} (damaged, or not really a {label})")
    for name in parts:
        if name not in names:
            continue
        if names[name] > 1:
            raise UnreadableDocument(f"the {label} holds {name} twice; refusing an ambiguous archive")
        info = archive.getinfo(name)
        if info.flag_bits & 0x1:
            raise UnreadableDocument(f"the {label} is password-protected; we cannot read it")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UnreadableDocument(f"{name} in the {label} uses an unsupported compression method")
        if info.file_size > max_bytes:
            raise UnreadableDocument(
                f"{name} in the {label} expands to {info.file_size / 2**20:.0f} MiB, over the limit of "
                f"{max_bytes / 2**20:.0f} MiB; refusing a likely zip bomb"
            )


class BoundedReader:
    """A part's inflated bytes, stopping with an error once more than `limit` bytes come out.

    The directory's sizes were checked already, but they are only claims; this is the guarantee.
    """

    def __init__(self, stream: IO[bytes], limit: int, what: str) -> None:
        self._stream = stream
        self._left = limit
        self._limit = limit
        self._what = what

    def read(self, size: int = -1) -> bytes:
        # lxml calls read(n); a read() of "everything" is served a chunk at a time too, each one bounded.
        data = self._stream.read(min(_CHUNK if size < 0 else size, _CHUNK, self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise UnreadableDocument(
                f"{self._what} inflates past the limit of {self._limit / 2**20:.0f} MiB; refusing a likely zip bomb"
            )
        return data


def read_small(archive: zipfile.ZipFile, name: str, limit: int) -> bytes | None:
    """A small entry (such as ODF's `mimetype`), or None when absent, too large or unreadable."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit or info.flag_bits & 0x1:
        return None
    try:
        with archive.open(info) as fh:
            return fh.read(limit)
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError):
        return None
