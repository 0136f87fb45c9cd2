"""What only an operator may read: metrics, the readiness checks, and the whole deployment's costs."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from fastapi.testclient import TestClient

from costs import ledger
from tests.api.conftest import error_of, new_key, runtime_of, text_document, upload, wait_for_job


def test_metrics_need_an_admin_key(client: TestClient, ada: dict[str, str]) -> None:
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and error_of(anonymous)["code"] == "unauthorized"
    refused = client.get("/metrics", headers=ada)
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    scraped = client.get("/metrics", headers=new_key(client, "root", admin=True))
    assert scraped.status_code == 200 and "ingest_jobs" in scraped.text


def test_a_setting_opens_metrics_for_a_private_prometheus(start_client: Callable[..., TestClient]) -> None:
    client = start_client(METRICS_PUBLIC="true")
    assert client.get("/metrics").status_code == 200


def test_readiness_shows_its_checks_to_an_admin_only(client: TestClient, ada: dict[str, str]) -> None:
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/health/ready").json() == {"ok": True}
    assert client.get("/health/ready", headers=ada).json() == {"ok": True}  # modes, keys, budget: not hers
    detailed = client.get("/health/ready", headers=new_key(client, "root", admin=True)).json()
    assert detailed["ok"] is True
    assert {"database", "openai", "llamaparse"} <= {check["name"] for check in detailed["checks"]}
    assert client.get("/health/ready", headers={"Authorization": "Bearer not-a-key"}).status_code == 401


def test_costs_are_each_user_s_own_and_whole_for_an_admin(client: TestClient, ada: dict[str, str]) -> None:
    bob = new_key(client, "bob")
    sent = upload(client, ada, text_document("lighthouses", paragraphs=40)).json()
    assert wait_for_job(client, ada, sent["job_id"])["status"] == "completed"

    ada_day = client.get("/v1/costs", headers=ada).json()
    bob_day = client.get("/v1/costs", headers=bob).json()
    whole = client.get("/v1/costs", headers=new_key(client, "root", admin=True)).json()
    # Mock mode records what the vendors would have charged: ada's document has a shadow cost.
    assert Decimal(ada_day["total"]["simulated_usd"]) > 0
    assert (ada_day["scope"], bob_day["scope"], whole["scope"]) == ("user", "user", "deployment")
    assert Decimal(bob_day["total"]["simulated_usd"]) == 0 and bob_day["stages"] == {}  # nothing of ada's
    assert whole["total"] == ada_day["total"]


def test_a_user_never_sees_the_deployment_s_limits(client: TestClient, ada: dict[str, str]) -> None:
    with runtime_of(client).pool.connection() as conn:
        ledger.set_limit(conn, "openai", Decimal("5"))  # what `ingest budget set 5 --service openai` does
    assert client.get("/v1/costs", headers=ada).json()["services"]["openai"]["limit_usd"] is None
    admin = new_key(client, "root", admin=True)
    assert client.get("/v1/costs", headers=admin).json()["services"]["openai"]["limit_usd"] == "5.000000"
