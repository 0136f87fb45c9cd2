"""Search over the API: the user's own completed chunks, best first, filtered by document when asked."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import error_of, new_key, upload, wait_for_job

PENGUINS = (
    b"Emperor penguins huddle through the Antarctic winter.\n\nThe males keep the egg warm on their feet."
)
ORCHIDS = b"Orchids grow on tree bark in the rain forest.\n\nTheir roots take water from the humid air."


def ingest(client: TestClient, headers: dict[str, str], content: bytes, name: str) -> dict:
    sent = upload(client, headers, content, name).json()
    assert wait_for_job(client, headers, sent["job_id"])["status"] == "completed"
    return sent


def test_search_finds_the_users_matching_chunk_first(client: TestClient, ada: dict[str, str]) -> None:
    penguins = ingest(client, ada, PENGUINS, "penguins.txt")
    ingest(client, ada, ORCHIDS, "orchids.txt")
    found = client.post("/v1/search", headers=ada, json={"query": "penguins huddle in winter", "top_k": 2})
    assert found.status_code == 200
    results = found.json()["results"]
    assert results[0]["document_id"] == penguins["document_id"]
    assert "penguins" in results[0]["text"]
    assert set(results[0]) >= {"document_id", "chunk_id", "text", "score", "metadata"}
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_search_within_chosen_documents(client: TestClient, ada: dict[str, str]) -> None:
    ingest(client, ada, PENGUINS, "penguins.txt")
    orchids = ingest(client, ada, ORCHIDS, "orchids.txt")
    found = client.post(
        "/v1/search",
        headers=ada,
        json={"query": "penguins", "top_k": 5, "document_ids": [orchids["document_id"]]},
    ).json()["results"]
    assert found and {r["document_id"] for r in found} == {orchids["document_id"]}


def test_search_never_returns_another_users_chunks(client: TestClient, ada: dict[str, str]) -> None:
    penguins = ingest(client, ada, PENGUINS, "penguins.txt")
    bob = new_key(client, "bob")
    ingest(client, bob, ORCHIDS, "orchids.txt")
    for body in ({"query": "penguins"}, {"query": "penguins", "document_ids": [penguins["document_id"]]}):
        results = client.post("/v1/search", headers=bob, json=body).json()["results"]
        assert penguins["document_id"] not in {r["document_id"] for r in results}


def test_search_with_nothing_stored_is_empty(client: TestClient, ada: dict[str, str]) -> None:
    nothing = {"results": [], "space": None}  # no space exists yet
    assert client.post("/v1/search", headers=ada, json={"query": "anything"}).json() == nothing


def test_bad_searches_are_400(client: TestClient, ada: dict[str, str]) -> None:
    for body in (
        {"query": "   "},
        {"query": ""},
        {"query": "x", "top_k": 0},
        {"query": "x", "top_k": 101},
        {"query": "x", "document_ids": ["not-a-uuid"]},
        {"top_k": 3},
        {"query": "x", "extra": 1},
    ):
        answer = client.post("/v1/search", headers=ada, json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert error_of(answer)["code"] == "bad_request"


def test_a_hit_carries_the_uploads_metadata_under_the_chunks_own(
    client: TestClient, ada: dict[str, str]
) -> None:
    metadata = '{"source": "field-notes", "page_start": "not the chunk\'s", "tags": ["birds"]}'
    sent = upload(client, ada, PENGUINS, "penguins.txt", metadata=metadata).json()
    assert wait_for_job(client, ada, sent["job_id"])["status"] == "completed"
    ingest(client, ada, ORCHIDS, "orchids.txt")
    results = client.post("/v1/search", headers=ada, json={"query": "penguins huddle", "top_k": 2}).json()[
        "results"
    ]
    by_doc = {r["document_id"]: r["metadata"] for r in results}
    penguin = by_doc[sent["document_id"]]
    assert (penguin["source"], penguin["tags"]) == ("field-notes", ["birds"])
    assert penguin["page_start"] != "not the chunk's"  # the chunk's own keys win
    orchid = next(m for d, m in by_doc.items() if d != sent["document_id"])
    assert "source" not in orchid  # one document's metadata never leaks onto another's hits


MANUAL = b"""# Widget manual

## Installing

Run the installer and accept the licence. The widget needs four gigabytes of disk.

## Error codes

Code XK-4471 means the flux capacitor overheated; let it cool for ten minutes before a restart.
"""


def test_each_mode_answers_and_a_bad_mode_is_400(client: TestClient, ada: dict[str, str]) -> None:
    manual = ingest(client, ada, MANUAL, "manual.md")
    ingest(client, ada, PENGUINS, "penguins.txt")
    for mode in ("hybrid", "vector", "keyword"):
        found = client.post("/v1/search", headers=ada, json={"query": "what does XK-4471 mean", "mode": mode})
        assert found.status_code == 200, found.text
        assert found.json()["results"][0]["document_id"] == manual["document_id"], mode
    # Keyword search ranks only chunks holding one of the words: the penguins share none.
    keyword = client.post(
        "/v1/search", headers=ada, json={"query": "flux capacitor", "mode": "keyword"}
    ).json()
    assert {r["document_id"] for r in keyword["results"]} == {manual["document_id"]}
    answer = client.post("/v1/search", headers=ada, json={"query": "x", "mode": "fuzzy"})
    assert answer.status_code == 400 and error_of(answer)["code"] == "bad_request"


def test_a_hit_carries_its_heading_path_and_pages(client: TestClient, ada: dict[str, str]) -> None:
    ingest(client, ada, MANUAL, "manual.md")
    hit = client.post("/v1/search", headers=ada, json={"query": "XK-4471 overheated"}).json()["results"][0]
    assert hit["heading_path"][:1] == ["Widget manual"]  # the chunk starts under the title
    assert (hit["page_start"], hit["page_end"]) == (None, None)  # markdown has no pages


def test_metadata_filter_keeps_documents_whose_metadata_contains_it(
    client: TestClient, ada: dict[str, str]
) -> None:
    first = upload(client, ada, PENGUINS, "a.txt", metadata='{"team": "birds", "year": 2024}').json()
    second = upload(client, ada, PENGUINS + b"\n\nAgain.", "b.txt", metadata='{"team": "plants"}').json()
    for sent in (first, second):
        assert wait_for_job(client, ada, sent["job_id"])["status"] == "completed"
    for mode in ("hybrid", "vector", "keyword"):
        body = {"query": "penguins", "metadata": {"team": "birds"}, "mode": mode, "top_k": 10}
        results = client.post("/v1/search", headers=ada, json=body).json()["results"]
        assert results and {r["document_id"] for r in results} == {first["document_id"]}, mode
    none = client.post("/v1/search", headers=ada, json={"query": "penguins", "metadata": {"team": "fish"}})
    assert none.json()["results"] == []
    for bad in ([1, 2], "team", 3):
        answer = client.post("/v1/search", headers=ada, json={"query": "penguins", "metadata": bad})
        assert answer.status_code == 400, bad


def test_offset_pages_through_the_same_ranking(client: TestClient, ada: dict[str, str]) -> None:
    ingest(client, ada, MANUAL, "manual.md")
    ingest(client, ada, PENGUINS, "penguins.txt")
    ingest(client, ada, ORCHIDS, "orchids.txt")
    for mode in ("hybrid", "vector", "keyword"):
        query = {"query": "the widget and the penguins in the forest", "mode": mode}
        whole = client.post("/v1/search", headers=ada, json=query | {"top_k": 3}).json()["results"]
        pages = [
            client.post("/v1/search", headers=ada, json=query | {"top_k": 1, "offset": n}).json()["results"]
            for n in range(3)
        ]
        assert [p[0]["chunk_id"] for p in pages if p] == [r["chunk_id"] for r in whole], mode
    for bad in (-1, 1001, "two"):
        assert client.post("/v1/search", headers=ada, json={"query": "x", "offset": bad}).status_code == 400


def test_min_score_drops_weaker_hits(client: TestClient, ada: dict[str, str]) -> None:
    ingest(client, ada, MANUAL, "manual.md")
    ingest(client, ada, PENGUINS, "penguins.txt")
    ingest(client, ada, ORCHIDS, "orchids.txt")
    all_hits = client.post("/v1/search", headers=ada, json={"query": "penguins huddle", "top_k": 10}).json()[
        "results"
    ]
    assert len(all_hits) >= 2
    cut = all_hits[0]["score"]
    kept = client.post(
        "/v1/search", headers=ada, json={"query": "penguins huddle", "top_k": 10, "min_score": cut}
    ).json()["results"]
    assert kept and all(r["score"] >= cut for r in kept) and len(kept) < len(all_hits)
    for bad in ("high", None, [1]):
        body = {"query": "x", "min_score": bad}
        if bad is None:
            continue  # null means no minimum
        assert client.post("/v1/search", headers=ada, json=body).status_code == 400, bad
