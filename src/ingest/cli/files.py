"""The files a command was given: files named, and every file under folders named."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path


def expand(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and every file under folders named (recursively, hidden ones skipped), in order."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if child.is_file() and not any(part.startswith(".") for part in relative):
                    yield child
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
