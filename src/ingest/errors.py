"""Errors users see. Each carries the HTTP status the API answers with and one clear line of text."""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error that reaches a user; `str(err)` is the one-line message."""

    status: int = 400
    code: str = "bad_request"


class UnsupportedType(IngestError):
    """The bytes do not show a supported type (the extension is not trusted)."""

    status = 415
    code = "unsupported_media_type"


class UnreadableDocument(IngestError):
    """The file claims a supported type but cannot be read: corrupt, encrypted, a bomb, empty."""

    status = 422
    code = "unreadable_document"


class EmptyDocument(UnreadableDocument):
    code = "empty_document"


class BlobMissing(UnreadableDocument):
    """The document's stored bytes are gone (its document was deleted). Says which blob, never where."""

    code = "blob_missing"


class TooLarge(IngestError):
    status = 413
    code = "too_large"


class NotFound(IngestError):
    status = 404
    code = "not_found"


class Conflict(IngestError):
    """The thing exists but is not in a state that allows this (e.g. retrying a job that has not failed)."""

    status = 409
    code = "conflict"


class Unauthorized(IngestError):
    status = 401
    code = "unauthorized"


class RateLimited(IngestError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(IngestError):
    """A vendor service cannot serve now (circuit open, key missing, budget spent in real mode)."""

    status = 503
    code = "service_unavailable"


class VendorError(IngestError):
    """A vendor call failed in a way retrying will not fix (bad key, no quota, rejected input)."""

    status = 502
    code = "vendor_error"
