"""Raw uploaded files, addressed by their SHA-256."""

from ingest.blobs.base import BlobStore, build_blob_store

__all__ = ["BlobStore", "build_blob_store"]
