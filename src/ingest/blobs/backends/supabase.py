"""Blobs in a Supabase Storage bucket, through the official `supabase` client (storage3, over httpx).

Objects are named like the local store's files, `ab/cd/<sha256>`, so a folder of blobs can be copied
into a bucket as it is. The calls storage3 makes, under `<SUPABASE_URL>/storage/v1/`:

    put_file   POST   object/<bucket>/<key>         multipart, `x-upsert: false`, streamed from the file
    get_bytes  GET    object/<bucket>/<key>
    exists     GET    object/info/<bucket>/<key>
    delete     DELETE object/<bucket>                 {"prefixes": [<key>]}  (a missing key is no error)
    check      GET    bucket/<bucket>

Storage answers errors as `{statusCode, error, message}` with the real status in the body's `statusCode`
(the HTTP status is often 400); storage3 raises them as StorageApiError(message, error, statusCode).

Installed with the `supabase` extra: `pip install 'ingest-pipeline[supabase]'`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.errors import BlobMissing, ServiceUnavailable

try:
    from storage3.exceptions import StorageApiError
    from supabase import Client, create_client
except ImportError as exc:  # an optional extra: say how to get it, not just which module is missing
    raise ImportError(
        "INGEST_BLOB_BACKEND=supabase needs the supabase client: pip install 'ingest-pipeline[supabase]'"
    ) from exc

if TYPE_CHECKING:
    from storage3._sync.file_api import SyncBucketProxy

    from ingest.config import Settings

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The body's `error` for a key that is already there: "Duplicate" on older servers, the error code on newer.
_ALREADY_EXISTS = frozenset({"Duplicate", "KeyAlreadyExists", "ResourceAlreadyExists"})
# For a missing object: "not_found" (older) or "NoSuchKey"; storage3 says "InternalError" for a 404 whose
# body it cannot read. A missing *bucket* ("NoSuchBucket", "Bucket not found") is a configuration error.
_NOT_FOUND = frozenset({"not_found", "NoSuchKey", "InternalError"})


def _status(exc: StorageApiError) -> str:
    return str(exc.status)


def _already_exists(exc: StorageApiError) -> bool:
    return _status(exc) == "409" and exc.code in _ALREADY_EXISTS


def _missing(exc: StorageApiError) -> bool:
    return _status(exc) == "404" and exc.code in _NOT_FOUND


class SupabaseBlobStore:
    def __init__(self, client: Client, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseBlobStore:
        key = settings.supabase_key.get_secret_value() if settings.supabase_key else ""
        if not settings.supabase_url or not key:
            raise ServiceUnavailable("INGEST_BLOB_BACKEND=supabase needs SUPABASE_URL and SUPABASE_KEY")
        return cls(create_client(settings.supabase_url, key), settings.supabase_bucket)

    def _objects(self) -> SyncBucketProxy:
        return self._client.storage.from_(self.bucket)

    @staticmethod
    def _key(sha256: str) -> str:
        # The key becomes an object path: accept nothing but a hex digest, as the local store does.
        if not _SHA256.match(sha256):
            raise ValueError("blob key must be a lowercase hex SHA-256")
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def put_file(self, sha256: str, path: Path) -> None:
        key = self._key(sha256)
        try:
            # A Path is opened by storage3 and streamed as multipart, never read whole into memory. The
            # bytes under a key never change, so caches may keep them (a year, the HTTP maximum).
            self._objects().upload(
                key,
                path,
                {"content-type": "application/octet-stream", "upsert": "false", "cache-control": "31536000"},
            )
        except StorageApiError as exc:
            # Keys are content hashes: an object already under this key holds these very bytes.
            if not _already_exists(exc):
                raise

    def get_bytes(self, sha256: str) -> bytes:
        key = self._key(sha256)
        try:
            return self._objects().download(key)
        except StorageApiError as exc:
            if _missing(exc):
                # As the local store: a missing blob is the same error, whatever the backend.
                gone = f"the stored file {sha256[:12]}… is no longer in the blob store"
                raise BlobMissing(gone) from None
            raise

    def exists(self, sha256: str) -> bool:
        try:
            self._objects().info(self._key(sha256))
        except StorageApiError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def delete(self, sha256: str) -> None:
        self._objects().remove([self._key(sha256)])

    def check(self) -> None:
        try:
            self._client.storage.get_bucket(self.bucket)
        except StorageApiError as exc:
            raise OSError(f"Supabase Storage bucket {self.bucket!r}: {exc.message}") from None
