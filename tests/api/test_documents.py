"""Documents through the API: upload, duplicate, list, read, delete (with chunks, vectors and blob)."""

from __future__ import annotations

import json
from decimal import Decimal

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ingest.cli.main import app as cli
from tests.api.conftest import (
    blob_count,
    count_rows,
    error_of,
    new_key,
    runtime_of,
    temp_files,
    text_document,
    upload,
    wait_for_job,
)


def test_upload_is_accepted_processed_and_listed(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(
        client, ada, text_document("lighthouses"), "lights.txt", metadata=json.dumps({"team": "coast"})
    )
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert body["duplicate"] is False and body["filename"] == "lights.txt"

    job = wait_for_job(client, ada, body["job_id"])
    assert (
        job["status"] == "completed" and job["progress"] == 1.0 and job["document_id"] == body["document_id"]
    )

    doc = client.get(f"/v1/documents/{body['document_id']}", headers=ada).json()
    assert doc["status"] == "completed" and doc["chunks"] >= 1
    assert doc["media_type"] == "text/plain" and doc["metadata"] == {"team": "coast"}
    assert doc["bytes"] == len(text_document("lighthouses"))

    listed = client.get("/v1/documents", headers=ada).json()["documents"]
    assert [d["id"] for d in listed] == [body["document_id"]]
    assert temp_files(client) == []


def test_the_same_bytes_again_answer_200_with_the_first_ids(client: TestClient, ada: dict[str, str]) -> None:
    first = upload(client, ada, text_document("tides"), "a.txt").json()
    again = upload(client, ada, text_document("tides"), "renamed.txt")
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert (again.json()["document_id"], again.json()["job_id"]) == (first["document_id"], first["job_id"])
    assert count_rows(client, "documents") == 1


def test_the_same_bytes_from_another_user_are_their_own_document(
    client: TestClient, ada: dict[str, str]
) -> None:
    bob = new_key(client, "bob")
    mine = upload(client, ada, text_document("harbours")).json()
    theirs = upload(client, bob, text_document("harbours"))
    assert theirs.status_code == 202
    assert theirs.json()["document_id"] != mine["document_id"]


def test_delete_removes_the_document_its_chunks_vectors_and_unshared_blob(
    client: TestClient, ada: dict[str, str]
) -> None:
    bob = new_key(client, "bob")
    shared = text_document("estuaries")
    mine = upload(client, ada, shared).json()
    theirs = upload(client, bob, shared).json()
    only_mine = upload(client, ada, text_document("dunes")).json()
    for headers, sent in ((ada, mine), (bob, theirs), (ada, only_mine)):
        wait_for_job(client, headers, sent["job_id"])
    assert blob_count(client) == 2

    assert client.delete(f"/v1/documents/{only_mine['document_id']}", headers=ada).status_code == 204
    assert blob_count(client) == 1  # its bytes were its own
    deleted = client.delete(f"/v1/documents/{mine['document_id']}", headers=ada)
    assert deleted.status_code == 204 and deleted.content == b""
    assert blob_count(client) == 1  # bob's document still uses these bytes

    assert error_of(client.get(f"/v1/documents/{mine['document_id']}", headers=ada))["code"] == "not_found"
    assert client.get(f"/v1/jobs/{mine['job_id']}", headers=ada).status_code == 404
    assert client.delete(f"/v1/documents/{mine['document_id']}", headers=ada).status_code == 404
    with client.app.state.api.rt.pool.connection() as conn:  # type: ignore[attr-defined]
        left = conn.execute(
            "SELECT count(*) FROM chunks WHERE document_id = ANY(%s)",
            ([mine["document_id"], only_mine["document_id"]],),
        ).fetchone()[0]
        spaces = [r[0] for r in conn.execute("SELECT table_name FROM embedding_spaces").fetchall()]
        vectors = sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in spaces)
    assert left == 0
    assert vectors == count_rows(client, "chunks") > 0  # only bob's vectors remain
    assert [d["id"] for d in client.get("/v1/documents", headers=bob).json()["documents"]] == [
        theirs["document_id"]
    ]


def test_list_pages_newest_first(client: TestClient, ada: dict[str, str]) -> None:
    ids = [upload(client, ada, text_document(f"topic{i}")).json()["document_id"] for i in range(3)]
    page = client.get("/v1/documents", headers=ada, params={"limit": 2}).json()
    rest = client.get("/v1/documents", headers=ada, params={"limit": 2, "offset": 2}).json()
    assert [d["id"] for d in page["documents"] + rest["documents"]] == ids[::-1]


def test_upload_with_a_callback_url_and_metadata(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(
        client, ada, text_document("reefs"), callback_url="https://example.com/hook", metadata='{"a": [1, 2]}'
    )
    assert sent.status_code == 202
    doc = client.get(f"/v1/documents/{sent.json()['document_id']}", headers=ada).json()
    assert doc["metadata"] == {"a": [1, 2]}


def test_hostile_file_names_are_stored_as_a_plain_base_name(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(client, ada, text_document("paths"), "../../etc/passwd.txt")
    assert sent.status_code == 202
    assert sent.json()["filename"] == "passwd.txt"


def test_costs_per_document_job_and_day_match_the_cli(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(client, ada, text_document("tariffs")).json()
    job = wait_for_job(client, ada, sent["job_id"])
    doc = client.get(f"/v1/documents/{sent['document_id']}", headers=ada).json()
    # Mock mode: nothing real is spent, the shadow cost (what the vendors would charge) is recorded.
    assert Decimal(doc["cost_usd"]) == Decimal(job["cost_usd"]) == 0
    assert Decimal(doc["simulated_cost_usd"]) == Decimal(job["simulated_cost_usd"]) > 0

    day = client.get("/v1/costs", headers=new_key(client, "root", admin=True))
    assert day.status_code == 200
    cli_json = CliRunner().invoke(cli, ["costs", "--json"], catch_exceptions=False).stdout
    assert day.json() == {**json.loads(cli_json), "scope": "deployment"}
    # Ada's own costs are all there is, and no limit is set: her view differs only in its scope.
    assert client.get("/v1/costs", headers=ada).json() == {**json.loads(cli_json), "scope": "user"}
    other_day = client.get("/v1/costs", headers=ada, params={"date": "2020-01-01"}).json()
    assert other_day["date"] == "2020-01-01" and Decimal(other_day["total"]["simulated_usd"]) == 0


def test_when_cheapest_sends_the_job_by_the_batch_route(client: TestClient, ada: dict[str, str]) -> None:
    # Mock mode: the mock batch client answers at once, at the Batch API's (shadow) price.
    sent = upload(client, ada, text_document("harbours"), when_cheapest="true", batch_fallback="sync").json()
    job = wait_for_job(client, ada, sent["job_id"])
    assert job["status"] == "completed" and job["embed_route"] == "batch" and job["batch"] is None
    plain = upload(client, ada, text_document("rivers")).json()
    assert wait_for_job(client, ada, plain["job_id"])["embed_route"] == "sync"
    with runtime_of(client).pool.connection() as conn:
        routes = dict(conn.execute("SELECT id::text, batch_fallback FROM jobs").fetchall())
        usage = conn.execute(
            "SELECT usage FROM cost_entries WHERE job_id = %s AND service = 'openai'", (sent["job_id"],)
        ).fetchone()[0]
    assert routes[sent["job_id"]] == "sync"
    assert usage["route"] == "batch"


def test_a_bad_when_cheapest_field_is_refused_and_changes_nothing(
    client: TestClient, ada: dict[str, str]
) -> None:
    for field, value in (("when_cheapest", "maybe"), ("batch_fallback", "never")):
        refused = upload(client, ada, text_document("fjords"), **{field: value})
        assert refused.status_code == 400
        assert field in error_of(refused)["message"]
    assert count_rows(client, "documents") == 0
    assert temp_files(client) == []
