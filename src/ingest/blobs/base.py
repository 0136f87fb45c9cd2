"""The BlobStore protocol and the one place that builds a store from settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ingest.config import Settings


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed storage: the key is the hex SHA-256 of the bytes, so a put is idempotent."""

    def put_file(self, sha256: str, path: Path) -> None: ...

    def get_bytes(self, sha256: str) -> bytes: ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None: ...

    def check(self) -> None:
        """Raise with a clear message when the store cannot be used (for health checks)."""


def build_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_backend == "supabase":
        from ingest.blobs.backends.supabase import SupabaseBlobStore

        return SupabaseBlobStore.from_settings(settings)
    from ingest.blobs.backends.local import LocalBlobStore

    return LocalBlobStore(settings.blob_dir)
