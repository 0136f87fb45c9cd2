"""Keys and users: no key, a bad key or another user's key reaches nothing of a user, on every route."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import error_of, new_key, text_document, upload, wait_for_job

# Every route under /v1, with the ids of the first user's document and job filled in where the path has them.
ROUTES = {
    ("post", "/v1/documents"),
    ("get", "/v1/documents"),
    ("get", "/v1/documents/{document_id}"),
    ("get", "/v1/documents/{document_id}/chunks"),
    ("delete", "/v1/documents/{document_id}"),
    ("get", "/v1/jobs/{job_id}"),
    ("get", "/v1/jobs/{job_id}/events"),
    ("post", "/v1/jobs/{job_id}/retry"),
    ("post", "/v1/search"),
    ("get", "/v1/costs"),
    ("get", "/v1/costs/days"),
    ("put", "/v1/costs/limits"),
    ("get", "/v1/router"),
    ("put", "/v1/router"),
    ("get", "/v1/status"),
    ("get", "/v1/admin/reembed"),
    ("post", "/v1/admin/reembed"),
    ("post", "/v1/admin/reembed/rollback"),
    ("delete", "/v1/admin/reembed/previous"),
}


def v1_routes(client: TestClient) -> set[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return {(method, path) for path, ops in paths.items() if path.startswith("/v1/") for method in ops}


def call(client: TestClient, method: str, path: str, headers: dict[str, str], ids: dict[str, str]):
    url = path.format(**ids)
    if (method, path) == ("post", "/v1/documents"):
        return client.post(
            url, headers=headers, files={"file": ("x.txt", b"some words to store", "text/plain")}
        )
    body = {"post": {"query": "lighthouse keepers"}, "put": {"mode": "real"}}.get(method)
    if path == "/v1/costs/limits":
        body = {"limit_usd": "5"}
    return client.request(method.upper(), url, headers=headers, json=body)


@pytest.fixture
def owned(client: TestClient, ada: dict[str, str]) -> dict[str, str]:
    sent = upload(client, ada, text_document("lighthouse keepers")).json()
    wait_for_job(client, ada, sent["job_id"])
    return {"document_id": sent["document_id"], "job_id": sent["job_id"]}


def test_the_table_covers_every_v1_route(client: TestClient) -> None:
    # The webhooks route comes with its own (signature) authentication when it is added.
    assert {r for r in v1_routes(client) if "webhooks" not in r[1]} == ROUTES


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ik_not-a-key", "Basic YWRhOnB3", "ik_raw"]
)
def test_no_key_or_a_bad_key_is_401_everywhere(
    client: TestClient, owned: dict[str, str], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in sorted(ROUTES):
        answer = call(client, method, path, headers, owned)
        assert answer.status_code == 401, (method, path, answer.text)
        assert error_of(answer)["code"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"


def test_another_user_reaches_nothing_of_the_first(
    client: TestClient, ada: dict[str, str], owned: dict[str, str]
) -> None:
    bob = new_key(client, "bob")
    doc, job = owned["document_id"], owned["job_id"]
    assert client.get("/v1/documents", headers=bob).json()["documents"] == []
    for method, path in (
        ("get", f"/v1/documents/{doc}"),
        ("get", f"/v1/documents/{doc}/chunks"),
        ("delete", f"/v1/documents/{doc}"),
        ("get", f"/v1/jobs/{job}"),
        ("get", f"/v1/jobs/{job}/events"),
        ("post", f"/v1/jobs/{job}/retry"),
    ):
        answer = client.request(method.upper(), path, headers=bob)
        assert answer.status_code == 404, (method, path)  # never 403: the id's existence is not revealed
        assert error_of(answer)["code"] == "not_found"
    hits = client.post("/v1/search", headers=bob, json={"query": "lighthouse keepers", "document_ids": [doc]})
    assert hits.json()["results"] == []
    # Bob's upload of the same bytes is his own document, not a duplicate of Ada's.
    mine = upload(client, bob, text_document("lighthouse keepers"))
    assert mine.status_code == 202 and mine.json()["document_id"] != doc
    # And Ada still has everything.
    assert client.get(f"/v1/documents/{doc}", headers=ada).json()["status"] == "completed"
    assert client.get(f"/v1/jobs/{job}", headers=ada).status_code == 200


def test_a_missing_id_is_the_same_404_as_another_users(client: TestClient, ada: dict[str, str]) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/v1/documents/{missing}", headers=ada).status_code == 404
    assert client.get(f"/v1/jobs/{missing}/events", headers=ada).status_code == 404


def test_switching_modes_needs_an_admin_key(client: TestClient, ada: dict[str, str]) -> None:
    refused = client.put("/v1/router", headers=ada, json={"mode": "hybrid"})
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    assert client.get("/v1/router", headers=ada).json() == {"modes": {"llamaparse": "mock", "openai": "mock"}}

    admin = new_key(client, "root", admin=True)
    switched = client.put("/v1/router", headers=admin, json={"mode": "hybrid", "service": "openai"})
    assert switched.status_code == 200
    assert switched.json() == {"modes": {"llamaparse": "mock", "openai": "hybrid"}}
    assert client.get("/v1/router", headers=ada).json()["modes"]["openai"] == "hybrid"
    bad = client.put("/v1/router", headers=admin, json={"mode": "hybrid", "service": "nosuch"})
    assert bad.status_code == 400


def test_liveness_and_the_bare_readiness_need_no_key(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/health/ready").json() == {"ok": True}
