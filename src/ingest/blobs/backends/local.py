"""Blobs on the local disk under INGEST_HOME/blobs/ab/cd/<sha256>."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from ingest.errors import BlobMissing

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        # The key becomes a path: accept nothing but a hex digest, so no name can escape the root.
        if not _SHA256.match(sha256):
            raise ValueError("blob key must be a lowercase hex SHA-256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_file(self, sha256: str, path: Path) -> None:
        target = self._path(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy to a temporary name in the same folder, then rename: readers never see half a file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, sha256: str) -> bytes:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(f"the stored file {sha256[:12]}… is no longer in the blob store") from None

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise OSError(f"blob directory {self.root} is not writable")
