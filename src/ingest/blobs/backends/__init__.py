"""BlobStore implementations."""
