"""The routes the console needs beyond the core API: a document's chunks, cost per day, setting a limit,
the admin status; and the console and the API docs served from the package, with nothing from a CDN."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import error_of, new_key, upload, wait_for_job

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

GUIDE = b"""# Lighthouse guide

## Keeping the lamp

The keeper trims the wick every evening and polishes the lens until it shines.

## Logbook

Every ship that passes is written in the logbook with the hour and the weather.
"""


def test_a_documents_chunks_come_in_order_with_headings_and_pages(client: TestClient, ada: dict) -> None:
    sent = upload(client, ada, GUIDE, "guide.md", "text/markdown").json()
    assert wait_for_job(client, ada, sent["job_id"])["status"] == "completed"
    answer = client.get(f"/v1/documents/{sent['document_id']}/chunks", headers=ada)
    assert answer.status_code == 200
    body = answer.json()
    assert body["job_id"] == sent["job_id"] and body["document_id"] == sent["document_id"]
    chunks = body["chunks"]
    assert [c["ordinal"] for c in chunks] == list(range(len(chunks))) and chunks
    wick = next(c for c in chunks if "trims the wick" in c["text"])
    assert wick["heading_path"][0] == "Lighthouse guide" and wick["page_start"] is None
    assert all(c["tokens"] > 0 for c in chunks)

    pdf = upload(client, ada, (SAMPLES / "carroll-wonderland.pdf").read_bytes(), "w.pdf", "application/pdf")
    job = wait_for_job(client, ada, pdf.json()["job_id"])
    assert job["status"] == "completed"
    paged = client.get(f"/v1/documents/{job['document_id']}/chunks?limit=3&offset=2", headers=ada).json()
    assert [c["ordinal"] for c in paged["chunks"]] == [2, 3, 4]
    assert all(1 <= c["page_start"] <= c["page_end"] for c in paged["chunks"])


def test_another_users_chunks_are_404_like_a_missing_document(client: TestClient, ada: dict) -> None:
    sent = upload(client, ada, GUIDE, "guide.md", "text/markdown").json()
    wait_for_job(client, ada, sent["job_id"])
    bob = new_key(client, "bob")
    theirs = client.get(f"/v1/documents/{sent['document_id']}/chunks", headers=bob)
    missing = client.get("/v1/documents/00000000-0000-4000-8000-000000000000/chunks", headers=bob)
    assert theirs.status_code == missing.status_code == 404
    assert error_of(theirs)["code"] == "not_found"
    assert theirs.json()["error"]["message"].startswith("no document")
    assert client.get(f"/v1/documents/{sent['document_id']}/chunks?limit=0", headers=ada).status_code == 400


def test_cost_per_day_is_the_users_own_and_the_whole_deployment_for_an_admin(
    client: TestClient, ada: dict
) -> None:
    sent = upload(client, ada, GUIDE, "guide.md", "text/markdown").json()
    wait_for_job(client, ada, sent["job_id"])
    bob = new_key(client, "bob")
    admin = new_key(client, "root", admin=True)

    mine = client.get("/v1/costs/days?days=7", headers=ada).json()
    assert mine["scope"] == "user" and len(mine["days"]) == 7
    dates = [d["date"] for d in mine["days"]]
    assert dates == sorted(dates) and dates[-1] == client.get("/v1/costs", headers=ada).json()["date"]
    today = mine["days"][-1]
    assert float(today["simulated_usd"]["openai"]) > 0  # the shadow cost of the mock embedding
    assert today["spent_usd"] == {"llamaparse": "0.000000", "openai": "0.000000"}
    assert all(set(d["simulated_usd"]) == {"llamaparse", "openai"} for d in mine["days"])

    theirs = client.get("/v1/costs/days?days=7", headers=bob).json()
    assert theirs["scope"] == "user"
    assert all(a == "0.000000" for d in theirs["days"] for a in d["simulated_usd"].values())

    everything = client.get("/v1/costs/days", headers=admin).json()
    assert everything["scope"] == "deployment" and len(everything["days"]) == 30
    assert everything["days"][-1]["simulated_usd"] == today["simulated_usd"]
    assert client.get("/v1/costs/days?days=0", headers=ada).status_code == 400
    assert client.get("/v1/costs/days?days=367", headers=ada).status_code == 400


def test_only_an_admin_sets_a_limit_and_a_bad_amount_changes_nothing(client: TestClient, ada: dict) -> None:
    admin = new_key(client, "root", admin=True)
    refused = client.put("/v1/costs/limits", headers=ada, json={"limit_usd": "1"})
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"

    for bad in ("-1", "abc", "1e999999", "0.0000000000001", "NaN"):
        answer = client.put("/v1/costs/limits", headers=admin, json={"limit_usd": bad, "service": "openai"})
        assert answer.status_code == 400, bad
        error_of(answer)
    assert client.put("/v1/costs/limits", headers=admin, json={"limit_usd": 5}).status_code == 400
    assert (
        client.put("/v1/costs/limits", headers=admin, json={"limit_usd": "5", "service": "x"}).status_code
        == 400
    )
    assert client.get("/v1/costs", headers=admin).json()["services"]["openai"]["limit_usd"] is None

    report = client.put(
        "/v1/costs/limits", headers=admin, json={"limit_usd": "0.25", "service": "openai"}
    ).json()
    assert report["services"]["openai"]["limit_usd"] == "0.250000"
    report = client.put("/v1/costs/limits", headers=admin, json={"limit_usd": "2"}).json()
    assert (
        report["total"]["limit_usd"] == "2.000000" and report["services"]["openai"]["limit_usd"] == "0.250000"
    )
    assert client.get("/v1/costs", headers=admin).json()["services"]["openai"]["limit_usd"] == "0.250000"
    # Limits are the deployment's: a normal key's report is its own documents' costs, without them.
    assert client.get("/v1/costs", headers=ada).json()["services"]["openai"]["limit_usd"] is None


def test_status_shows_modes_circuits_readiness_and_queues_to_an_admin_only(
    client: TestClient, ada: dict
) -> None:
    refused = client.get("/v1/status", headers=ada)
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    admin = new_key(client, "root", admin=True)
    client.put("/v1/router", headers=admin, json={"mode": "hybrid", "service": "openai"})
    status = client.get("/v1/status", headers=admin).json()
    checks = {c["name"]: c for c in status["checks"]}
    assert set(checks) == {"database", "blob_store", "broker", "llamaparse", "openai"}
    assert checks["openai"]["info"]["mode"] == "hybrid" and checks["llamaparse"]["info"]["mode"] == "mock"
    assert (
        checks["openai"]["info"]["circuit"] == "closed" and checks["openai"]["info"]["key_present"] is False
    )
    assert status["ok"] is True and status["queues"].get("ingest") == 0


def test_the_console_and_the_api_docs_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'id="sign-in-form"' in page.text
    for html in (page.text, client.get("/docs").text, client.get("/redoc").text):
        assets = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', html)
        assets += re.findall(r"url: ?'([^']+)'", html)
        assert assets and not [a for a in assets if "//" in a], assets  # nothing from another host
        for asset in assets:
            if asset.startswith("/") and not asset.startswith("/openapi"):
                assert client.get(asset).status_code == 200, asset
    assert "fonts.googleapis" not in client.get("/redoc").text
    # ReDoc's bundle would fetch its logo from a CDN: the docs pages' policy allows images from here only.
    for docs in ("/docs", "/redoc"):
        assert "img-src 'self' data:;" in client.get(docs).headers["content-security-policy"]
    assert "swagger-ui-bundle.js" in client.get("/docs").text
    script = client.get("/console/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/console/../app.py").status_code == 404
    assert client.get("/vendor/redoc/LICENSE").status_code == 200
