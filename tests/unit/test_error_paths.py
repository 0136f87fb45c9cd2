"""Stored job errors never show the server's file paths (they are shown to users by the API and CLI)."""

from __future__ import annotations

import pytest

from workers.states import one_line


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (
            FileNotFoundError(2, "No such file or directory", "/srv/ingest/home/blobs/ab/cd/" + "ab" * 32),
            "[Errno 2] No such file or directory: '<path>'",
        ),
        (
            OSError("cannot open /home/ada/.local/share/ingest/tmp/x.pdf, giving up"),
            "cannot open <path>, giving up",
        ),
    ],
)
def test_a_server_path_is_hidden(error: Exception, shown: str) -> None:
    assert one_line(error) == shown


def test_urls_and_plain_text_stay() -> None:
    text = (
        "POST https://api.openai.com/v1/embeddings answered 500 (retry 2/5); see http://127.0.0.1:8900/v1/x"
    )
    assert one_line(RuntimeError(text)) == text
