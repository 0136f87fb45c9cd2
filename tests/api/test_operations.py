"""Health, metrics and the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.conftest import new_key, text_document, upload, wait_for_job


def test_readiness_is_503_with_the_reason_when_a_service_cannot_serve(client: TestClient) -> None:
    assert client.get("/health/ready").json()["ok"] is True
    admin = new_key(client, "root", admin=True)
    client.put("/v1/router", headers=admin, json={"mode": "real", "service": "openai"})  # and no key is set
    ready = client.get("/health/ready", headers=admin)
    assert ready.status_code == 503
    failing = [c for c in ready.json()["checks"] if not c["ok"]]
    assert [c["name"] for c in failing] == ["openai"] and "key not set" in failing[0]["detail"]
    assert client.get("/health/live").status_code == 200


def test_metrics_count_requests_by_route_template_and_jobs_by_status(client: TestClient, ada: dict) -> None:
    sent = upload(client, ada, text_document("weather stations")).json()
    wait_for_job(client, ada, sent["job_id"])
    client.get(f"/v1/jobs/{sent['job_id']}", headers=ada)
    client.get("/no/such/path/12345")
    client.get("/openapi.json")

    text = client.get("/metrics", headers=new_key(client, "root", admin=True)).text
    assert 'ingest_http_requests_total{method="POST",route="/v1/documents",status="202"} 1.0' in text
    assert (
        'ingest_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/v1/jobs/{job_id}"}'
        in text
    )
    assert 'route="/openapi.json"' in text
    assert 'route="unmatched",status="404"' in text and "12345" not in text  # raw paths never become labels
    assert 'ingest_jobs{status="completed"} 1.0' in text
    assert 'ingest_queue_messages{queue="ingest"}' in text


def test_openapi_describes_the_upload_form_and_the_error_shape(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    upload_op = spec["paths"]["/v1/documents"]["post"]
    form = upload_op["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and set(form["properties"]) == {
        "file",
        "metadata",
        "callback_url",
        "when_cheapest",
        "batch_fallback",
    }
    assert {"200", "202", "413", "415", "422", "429"} <= set(upload_op["responses"])
    assert "ErrorOut" in spec["components"]["schemas"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_openapi_documents_malformed_input_as_the_400_it_answers(
    client: TestClient, ada: dict[str, str]
) -> None:
    spec = client.get("/openapi.json").json()
    search_op = spec["paths"]["/v1/search"]["post"]
    assert "422" not in search_op["responses"] and "400" in search_op["responses"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # The upload's own 422 (a file that cannot be parsed) stays documented.
    assert "422" in spec["paths"]["/v1/documents"]["post"]["responses"]
    answer = client.post("/v1/search", json={"query": "x", "top_k": "many"}, headers=ada)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request"
