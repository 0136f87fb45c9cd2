"""Streams a multipart upload to a temporary file, hashing and counting as it goes; never holds it whole.

The request body is read chunk by chunk from the ASGI stream and fed to python-multipart's incremental
parser. Parsing, hashing and the disk writes run in a worker thread, so a 100 MB upload neither blocks the
event loop nor lives in memory: the most held at once is one received chunk and the small form fields.
Past the size limit reading stops with 413. The temporary file is removed however the request ends.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from anyio import to_thread
from pydantic import AnyHttpUrl, TypeAdapter, ValidationError
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ingest.config import Settings
from ingest.destinations import Unresolvable, resolve
from ingest.errors import IngestError, TooLarge
from ingest.netguard import DestinationRefused, IPNetwork

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
TEXT_FIELDS = ("metadata", "callback_url", "when_cheapest", "batch_fallback")
MAX_FIELD_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 16
MAX_FILENAME_CHARS = 255
# Boundaries, part headers and the two small text fields on top of the file itself.
FORM_OVERHEAD_BYTES = 2 * MAX_FIELD_BYTES + 64 * 1024

_URL = TypeAdapter(AnyHttpUrl)
_PATH_SEPARATORS = re.compile(r"[/\\]")


class Malformed(IngestError):
    status = 400
    code = "bad_request"


@dataclass(slots=True)
class Upload:
    """A received upload: the file on disk with its digest, and the form's other fields, validated."""

    path: Path
    filename: str
    sha256: str
    size: int
    metadata: dict[str, Any]
    callback_url: str | None
    when_cheapest: bool | None = None  # None: the deployment's default (INGEST_WHEN_CHEAPEST)
    batch_fallback: str | None = None


def parse_when_cheapest(raw: bytes | None) -> bool | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace").strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise Malformed("when_cheapest must be true or false")
    return text in ("true", "1")


def parse_batch_fallback(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace").strip()
    if text not in ("batch", "sync"):
        raise Malformed("batch_fallback must be batch or sync")
    return text


def safe_filename(raw: str) -> str:
    """The name as shown back to the user: its last path component, without control or bidi characters.

    Never used to build a path (blobs are named by their digest); cleaned so that what is stored and
    echoed is plain text, and PostgreSQL (which refuses NUL) can store it.
    """
    base = _PATH_SEPARATORS.split(raw)[-1]
    cleaned = "".join(
        c for c in base if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp")
    ).strip()
    if cleaned in ("", ".", ".."):
        return "upload"
    if len(cleaned) > MAX_FILENAME_CHARS:
        stem, dot, suffix = cleaned.rpartition(".")
        keep = suffix[:16] if dot and stem else ""
        cleaned = (
            cleaned[: MAX_FILENAME_CHARS - len(keep) - 1] + "." + keep
            if keep
            else cleaned[:MAX_FILENAME_CHARS]
        )
    return cleaned


def _check_json(value: Any, depth: int = 0) -> None:
    # PostgreSQL's jsonb refuses NUL and lone surrogates, and deep nesting costs stack: refuse them here as
    # 400 rather than fail in the database as 500.
    if depth > MAX_METADATA_DEPTH:
        raise Malformed(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise Malformed("metadata must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Malformed("metadata contains text that is not valid Unicode") from None
    elif isinstance(value, float) and not math.isfinite(value):
        # 1e400 parses as infinity; jsonb has no such number, and neither has JSON.
        raise Malformed("metadata numbers must be finite (no NaN, Infinity or overflowing values)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def _non_finite(name: str) -> Any:
    # Python's json accepts NaN, Infinity and -Infinity, which are not JSON.
    raise Malformed(f"metadata numbers must be finite: {name} is not JSON")


def parse_metadata(raw: bytes | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_non_finite)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Malformed("metadata must be a JSON object") from None
    if not isinstance(value, dict):
        raise Malformed("metadata must be a JSON object")
    _check_json(value)
    return value


def parse_callback_url(raw: bytes | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        text = raw.decode("utf-8").strip()
        return str(_URL.validate_python(text))
    except (UnicodeDecodeError, ValidationError):
        raise Malformed("callback_url must be an http(s) URL") from None


def check_callback_destination(url: str | None, trusted: Sequence[IPNetwork]) -> None:
    """Refuse a callback_url that resolves inside the network now (delivery checks again: DNS may change).
    A host that does not resolve yet is accepted; its deliveries fail until it does."""
    if url is None:
        return
    try:
        resolve(url, trusted)
    except Unresolvable:
        return
    except DestinationRefused as exc:
        raise Malformed(f"callback_url: {exc}") from None


def multipart_boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise Malformed("the body must be multipart/form-data with a `file` part")
    return boundary


def check_declared_length(request: Request, max_bytes: int) -> None:
    """Refuse before reading a byte when Content-Length already says the file cannot fit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD_BYTES:
        raise TooLarge(f"the upload is larger than the {max_bytes // (1024 * 1024)} MB limit")


@dataclass
class _FormReader:
    """python-multipart callbacks: the file part goes to `out` (hashed, counted); text fields to memory."""

    out: IO[bytes]
    max_bytes: int
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    filename: str | None = None
    fields: dict[str, bytearray] = field(default_factory=dict)
    finished: bool = False
    _header_name: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)
    _disposition: bytes = b""
    _part: str | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""
        self._part = None

    def _header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        # Header parameters come back as latin-1 bytes of what was sent; clients send UTF-8.
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == FILE_FIELD:
            if self.filename is not None:
                raise Malformed("send exactly one `file` part")
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace")
        elif name in TEXT_FIELDS:
            if name in self.fields:
                raise Malformed(f"the `{name}` field is sent twice")
            self.fields[name] = bytearray()
        else:
            raise Malformed(
                f"unexpected form field {name[:40]!r}; the fields are file, metadata, callback_url,"
                " when_cheapest, batch_fallback"
            )
        self._part = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        if self._part == FILE_FIELD:
            self.size += len(piece)
            if self.size > self.max_bytes:
                raise TooLarge(f"the file is larger than the {self.max_bytes // (1024 * 1024)} MB limit")
            self.digest.update(piece)
            self.out.write(piece)
        elif self._part is not None:
            buffer = self.fields[self._part]
            if len(buffer) + len(piece) > MAX_FIELD_BYTES:
                raise TooLarge(f"the `{self._part}` field is larger than {MAX_FIELD_BYTES // 1024} KB")
            buffer.extend(piece)

    def _end(self) -> None:
        self.finished = True


async def _stream_form(request: Request, boundary: bytes, out: IO[bytes], max_bytes: int) -> _FormReader:
    reader = _FormReader(out, max_bytes)
    try:
        parser = MultipartParser(boundary, reader.callbacks())
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            # Preambles and epilogues are not parts: bound the whole body too, not just the file.
            if received > max_bytes + FORM_OVERHEAD_BYTES:
                raise TooLarge(f"the upload is larger than the {max_bytes // (1024 * 1024)} MB limit")
            if chunk:
                await to_thread.run_sync(parser.write, chunk)
        parser.finalize()
    except FormParserError as exc:
        raise Malformed(f"the multipart body is malformed: {' '.join(str(exc).split())[:120]}") from None
    if not reader.finished:
        raise Malformed("the multipart body ended before its closing boundary")
    if reader.filename is None:
        raise Malformed("the form has no `file` part")
    return reader


@asynccontextmanager
async def receive_upload(request: Request, settings: Settings) -> AsyncIterator[Upload]:
    """Stream the request's form to a temporary file under INGEST_HOME/tmp; yield it; always remove it."""
    max_bytes = settings.max_upload_mb * 1024 * 1024
    check_declared_length(request, max_bytes)
    boundary = multipart_boundary(request)
    tmp_dir = settings.home / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="upload-", suffix=".part")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            reader = await _stream_form(request, boundary, out, max_bytes)
        metadata = parse_metadata(_field(reader, "metadata"))
        callback_url = parse_callback_url(_field(reader, "callback_url"))
        when_cheapest = parse_when_cheapest(_field(reader, "when_cheapest"))
        batch_fallback = parse_batch_fallback(_field(reader, "batch_fallback"))
        # A name look-up may wait on DNS: off the event loop.
        await to_thread.run_sync(check_callback_destination, callback_url, settings.outbound_allow_networks)
        yield Upload(
            path=path,
            filename=safe_filename(reader.filename or ""),
            sha256=reader.digest.hexdigest(),
            size=reader.size,
            metadata=metadata,
            callback_url=callback_url,
            when_cheapest=when_cheapest,
            batch_fallback=batch_fallback,
        )
    finally:
        with suppress(FileNotFoundError):
            path.unlink()


def _field(reader: _FormReader, name: str) -> bytes | None:
    value = reader.fields.get(name)
    return bytes(value) if value is not None else None
