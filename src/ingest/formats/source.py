"""A document arrives as bytes in memory or as a path on disk; read only as much of it as needed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

Source = bytes | Path


def read_head(source: Source, size: int) -> bytes:
    if isinstance(source, bytes):
        return source[:size]
    with source.open("rb") as fh:
        return fh.read(size)


def read_all(source: Source) -> bytes:
    return source if isinstance(source, bytes) else source.read_bytes()


def byte_size(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else source.stat().st_size


def open_binary(source: Source) -> BinaryIO:
    """A seekable binary stream over the source; the caller closes it."""
    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")
