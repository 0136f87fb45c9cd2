"""Jobs: their state, and the server-sent events that follow one to its end."""

from __future__ import annotations

import itertools
import json
from uuid import UUID

from fastapi.testclient import TestClient

from ingest.leases import embed_unit, new_owner
from ingest.store import leases
from tests.api.conftest import new_key, runtime_of, text_document, upload, wait_for_job
from workers.states import fail_job


def read_events(client: TestClient, headers: dict[str, str], job_id: str) -> list[tuple[str, dict]]:
    """Every (event, data) of the stream, which must end by itself."""
    events: list[tuple[str, dict]] = []
    name = ""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_a_job_reports_its_state(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(client, ada, text_document("glaciers")).json()
    job = client.get(f"/v1/jobs/{sent['job_id']}", headers=ada)
    assert job.status_code == 200
    assert set(job.json()) >= {
        "id",
        "document_id",
        "status",
        "stage",
        "progress",
        "attempts",
        "error",
        "cost_usd",
        "deferred_until",
    }
    done = wait_for_job(client, ada, sent["job_id"])
    assert done["status"] == "completed" and done["stage"] == "done" and done["error"] is None
    assert done["attempts"] >= 1


def test_events_follow_the_job_and_end_with_its_final_status(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(client, ada, text_document("volcanoes", paragraphs=200)).json()
    events = read_events(client, ada, sent["job_id"])
    assert events and all(name == "job" for name, _ in events)
    assert events[-1][1]["status"] == "completed" and events[-1][1]["progress"] == 1.0
    progress = [data["progress"] for _, data in events]
    assert progress == sorted(progress)
    # One event per change: no two neighbours say the same thing.
    keys = [
        (d["status"], d["stage"], d["progress"], d["cost_usd"], d["simulated_cost_usd"]) for _, d in events
    ]
    assert all(a != b for a, b in itertools.pairwise(keys))


def test_events_of_a_finished_job_are_one_final_event(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(client, ada, text_document("canyons")).json()
    wait_for_job(client, ada, sent["job_id"])
    events = read_events(client, ada, sent["job_id"])
    assert [(name, data["status"]) for name, data in events] == [("job", "completed")]


def hold(client: TestClient, job_id: str) -> None:
    """Park a job as deferred for an hour, so its stream stays open while the test acts on it."""
    with runtime_of(client).pool.connection() as conn:
        conn.execute(
            "UPDATE jobs SET status = 'deferred', deferred_until = now() + interval '1 hour' WHERE id = %s",
            (job_id,),
        )


def test_a_failed_job_ends_its_stream_failed_with_its_error(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(client, ada, text_document("sandbars")).json()
    wait_for_job(client, ada, sent["job_id"])
    hold(client, sent["job_id"])
    events: list[dict] = []
    with client.stream("GET", f"/v1/jobs/{sent['job_id']}/events", headers=ada) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == 1:
                    assert events[0]["status"] == "deferred"
                    fail_job(runtime_of(client), sent["job_id"], "the parser gave up: page 3 is unreadable")
    assert [e["status"] for e in events] == ["deferred", "failed"]
    assert events[-1]["error"] == "the parser gave up: page 3 is unreadable"


def test_the_stream_says_when_the_document_is_deleted(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(client, ada, text_document("moraines")).json()
    wait_for_job(client, ada, sent["job_id"])
    hold(client, sent["job_id"])
    names: list[str] = []
    with client.stream("GET", f"/v1/jobs/{sent['job_id']}/events", headers=ada) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
                if len(names) == 1:
                    assert (
                        client.delete(f"/v1/documents/{sent['document_id']}", headers=ada).status_code == 204
                    )
    assert names[-1] == "error"


def test_another_users_job_and_events_are_404(client: TestClient, ada: dict[str, str]) -> None:
    sent = upload(client, ada, text_document("fjords")).json()
    bob = new_key(client, "bob")
    assert client.get(f"/v1/jobs/{sent['job_id']}", headers=bob).status_code == 404
    assert client.get(f"/v1/jobs/{sent['job_id']}/events", headers=bob).status_code == 404


def test_a_failed_job_is_retried_by_its_owner_only(
    client: TestClient, ada: dict[str, str], bob: dict[str, str]
) -> None:
    sent = upload(client, ada, text_document("fjords")).json()
    job_id = sent["job_id"]
    assert wait_for_job(client, ada, job_id)["status"] == "completed"
    refused = client.post(f"/v1/jobs/{job_id}/retry", headers=ada)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"

    rt = runtime_of(client)
    with rt.pool.connection() as conn:
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = %s", (job_id,))
    assert fail_job(rt, job_id, "the parser gave up")
    hits = client.post("/v1/search", json={"query": "fjords", "top_k": 3}, headers=ada).json()["results"]
    assert hits == []  # nothing of a failed document is searchable

    assert client.post(f"/v1/jobs/{job_id}/retry", headers=bob).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}", headers=ada).json()["status"] == "failed"  # bob changed nothing

    retried = client.post(f"/v1/jobs/{job_id}/retry", headers=ada)
    assert retried.status_code == 202, retried.text
    assert retried.json()["id"] == job_id and retried.json()["error"] is None
    done = wait_for_job(client, ada, job_id)
    assert done["status"] == "completed"
    hits = client.post("/v1/search", json={"query": "fjords", "top_k": 3}, headers=ada).json()["results"]
    assert hits and hits[0]["document_id"] == sent["document_id"]


def test_a_running_job_shows_who_holds_it_and_when_it_last_reported(
    client: TestClient, ada: dict[str, str], bob: dict[str, str]
) -> None:
    sent = upload(client, ada, text_document("lanterns")).json()
    done = wait_for_job(client, ada, sent["job_id"])
    assert done["leases"] == []  # nothing at work on a finished job
    rt = runtime_of(client)
    worker = new_owner("worker-7", 4121)
    with rt.pool.connection() as conn:  # a worker process holding one embedding batch of the job
        leases.put_over(conn, UUID(sent["job_id"]), embed_unit(0, 255), worker, 20)
    shown = client.get(f"/v1/jobs/{sent['job_id']}", headers=ada).json()["leases"]
    assert [(lease["unit"], lease["worker"]) for lease in shown] == [("embed:0-255", worker)]
    assert shown[0]["last_heartbeat_at"] < shown[0]["expires_at"]
    assert client.get(f"/v1/jobs/{sent['job_id']}", headers=bob).status_code == 404
