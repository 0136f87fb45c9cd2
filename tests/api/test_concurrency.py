"""100 uploads at once from several users through the ASGI app: each user gets exactly their per-minute
quota accepted and 429 for the rest, the same bytes become one document, and every accepted one completes."""

from __future__ import annotations

from collections import defaultdict

import anyio
import httpx
from fastapi.testclient import TestClient

from tests.api.conftest import count_rows, new_key, temp_files, text_document, wait_for_job

USERS = 5
UPLOADS_EACH = 20
LIMIT = 10  # INGEST_UPLOADS_PER_MINUTE's default
DISTINCT = 12  # each user sends 12 different files, 8 of them twice


def test_100_concurrent_uploads(client: TestClient) -> None:
    keys = {f"user{u}": new_key(client, f"user{u}") for u in range(USERS)}
    plan = [(user, i % DISTINCT) for user in keys for i in range(UPLOADS_EACH)]
    answers: list[tuple[str, int, httpx.Response]] = []

    async def send(http: httpx.AsyncClient, user: str, n: int) -> None:
        files = {"file": (f"{user}-{n}.txt", text_document(f"{user} topic {n}"), "text/plain")}
        answers.append((user, n, await http.post("/v1/documents", headers=keys[user], files=files)))

    async def send_all() -> None:
        transport = httpx.ASGITransport(app=client.app)
        http = httpx.AsyncClient(transport=transport, base_url="http://api", timeout=None)
        async with http, anyio.create_task_group() as tasks:
            for user, n in plan:
                tasks.start_soon(send, http, user, n)

    anyio.run(send_all)
    assert len(answers) == USERS * UPLOADS_EACH == 100

    accepted: dict[str, list[tuple[int, httpx.Response]]] = defaultdict(list)
    for user, n, answer in answers:
        assert answer.status_code in (200, 202, 429), answer.text
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) >= 1
        else:
            accepted[user].append((n, answer))
    assert {user: len(ok) for user, ok in accepted.items()} == {user: LIMIT for user in keys}

    # The same bytes from one user: one 202 and the first upload's ids for every repeat.
    documents = set()
    for user, ok in accepted.items():
        by_content: dict[int, list[httpx.Response]] = defaultdict(list)
        for n, answer in ok:
            by_content[n].append(answer)
        for same in by_content.values():
            assert sorted(a.status_code for a in same) == [200] * (len(same) - 1) + [202]
            assert len({(a.json()["document_id"], a.json()["job_id"]) for a in same}) == 1
            documents.add((user, same[0].json()["document_id"], same[0].json()["job_id"]))

    assert count_rows(client, "documents") == len(documents)
    for user, _, job_id in documents:
        assert wait_for_job(client, keys[user], job_id)["status"] == "completed"
    assert temp_files(client) == []
