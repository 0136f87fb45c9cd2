from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ingest.blobs.backends.local import LocalBlobStore


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "doc.txt"
    source.write_bytes(b"hello blobs")
    key = hashlib.sha256(b"hello blobs").hexdigest()
    store.put_file(key, source)
    store.put_file(key, source)
    assert store.get_bytes(key) == b"hello blobs"
    stored = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(stored) == 1  # no temporary files left behind
    store.delete(key)
    assert not store.exists(key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 64, "abc", ""])
def test_keys_that_are_not_digests_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).get_bytes(key)
