"""Packing embedding inputs into Batch API files, and reading output and error lines back."""

from __future__ import annotations

import json

import pytest

from router.batch_packing import MAX_REQUESTS, Input, input_line, pack, read_answers


def test_an_input_line_is_an_embeddings_request_named_by_its_chunk() -> None:
    line = json.loads(input_line(Input("42", "héllo"), model="text-embedding-3-small", dimensions=64))
    assert line == {
        "custom_id": "42",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {
            "model": "text-embedding-3-small",
            "input": "héllo",
            "encoding_format": "float",
            "dimensions": 64,
        },
    }
    assert (
        "dimensions"
        not in json.loads(input_line(Input("1", "x"), model="text-embedding-ada-002", dimensions=None))[
            "body"
        ]
    )


def test_pack_keeps_every_batch_within_the_request_limit() -> None:
    lines = [b"x"] * (2 * MAX_REQUESTS + 5)
    runs = pack(lines)
    assert [len(r) for r in runs] == [MAX_REQUESTS, MAX_REQUESTS, 5]
    assert [i for r in runs for i in r] == list(range(len(lines)))  # every input once, in order


def test_pack_keeps_every_file_within_the_byte_limit_counting_newlines() -> None:
    lines = [b"a" * 9, b"b" * 9, b"c" * 9, b"d" * 19]
    # Each line takes its length and a newline: 10 + 10 fit in 20; the 19-byte line alone takes 20.
    assert pack(lines, max_bytes=20) == [range(0, 2), range(2, 3), range(3, 4)]
    with pytest.raises(ValueError, match="larger than a batch file"):
        pack([b"z" * 20], max_bytes=20)


def test_pack_of_nothing_is_no_batch() -> None:
    assert pack([]) == []


def test_read_answers_matches_vectors_and_failures_by_custom_id() -> None:
    ok = {
        "id": "batch_req_1",
        "custom_id": "7",
        "response": {
            "status_code": 200,
            "request_id": "req_1",
            "body": {
                "object": "list",
                "data": [{"index": 0, "embedding": [0.6, 0.8]}],
                "usage": {"prompt_tokens": 5},
            },
        },
        "error": None,
    }
    failed = {
        "id": "batch_req_2",
        "custom_id": "8",
        "response": {
            "status_code": 500,
            "request_id": "req_2",
            "body": {"error": {"type": "server_error", "message": "boom"}},
        },
        "error": None,
    }
    expired = {
        "id": "batch_req_3",
        "custom_id": "9",
        "response": None,
        "error": {"code": "batch_expired", "message": "not executed before the window expired"},
    }
    content = "\n".join(json.dumps(x) for x in (ok, failed, expired)).encode() + b"\n"
    answers = {a.custom_id: a for a in read_answers(content)}
    assert answers["7"].embedding == [0.6, 0.8] and answers["7"].tokens == 5 and answers["7"].error is None
    assert (
        answers["8"].embedding is None
        and answers["8"].tokens == 0
        and answers["8"].error == "server_error: boom"
    )
    assert answers["9"].embedding is None and answers["9"].error is not None
    assert answers["9"].error.startswith("batch_expired")
