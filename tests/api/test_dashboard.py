"""The Grafana dashboard in docker/: it parses, and every panel queries only series the product exports
(the API's /metrics after real work, and the worker metrics port's queue collector)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dramatiq.brokers.stub import StubBroker
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import new_key, text_document, upload, wait_for_job
from workers.middleware.metrics import QueueCollector

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "dashboards" / "ingest.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def series_names(text: str) -> set[str]:
    """The series a scrape of `text` offers a query, families without samples yet included."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def exported(client: TestClient, headers: dict[str, str]) -> set[str]:
    sent = upload(client, headers, text_document("harbour cranes")).json()
    assert wait_for_job(client, headers, sent["job_id"])["status"] == "completed"
    metrics = client.get("/metrics", headers=new_key(client, "root", admin=True))
    assert metrics.status_code == 200
    broker = StubBroker()
    broker.declare_queue("ingest")
    worker_port = CollectorRegistry()
    worker_port.register(QueueCollector(broker))
    return series_names(metrics.text) | series_names(generate_latest(worker_port).decode())


def test_every_panel_queries_series_the_product_exports(client: TestClient, ada: dict[str, str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    names = exported(client, ada)
    queried: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            used = set(re.findall(r"\bingest_[a-z0-9_]+", target["expr"]))
            assert used, (panel["title"], target["expr"])
            assert used <= names, (panel["title"], sorted(used - names))
            queried |= used
    # What the issue asks the dashboard to show.
    for wanted in (
        "ingest_budget_spent_usd",
        "ingest_budget_reserved_usd",
        "ingest_budget_limit_usd",
        "ingest_documents_completed_total",
        "ingest_chunks_embedded_total",
        "ingest_stage_duration_seconds_bucket",
        "ingest_queue_messages",
        "ingest_vendor_errors_total",
        "ingest_circuit_state",
    ):
        assert wanted in queried, wanted
    assert any('status="deferred"' in t["expr"] for p in dashboard["panels"] for t in p["targets"])


def test_the_budget_and_circuit_gauges_read_the_ledger_and_the_breakers(
    client: TestClient, ada: dict[str, str]
) -> None:
    admin = new_key(client, "root", admin=True)
    client.put("/v1/costs/limits", headers=admin, json={"limit_usd": "0.5", "service": "openai"})
    sent = upload(client, ada, text_document("harbour cranes")).json()
    wait_for_job(client, ada, sent["job_id"])
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics", headers=admin).text)}
    limits = {s.labels["service"]: s.value for s in families["ingest_budget_limit_usd"].samples}
    assert limits == {"openai": 0.5}  # no limit, no series
    spent = {s.labels["service"]: s.value for s in families["ingest_budget_spent_usd"].samples}
    assert spent == {"llamaparse": 0.0, "openai": 0.0, "all": 0.0}  # mock work costs nothing real
    shadow = {s.labels["service"]: s.value for s in families["ingest_budget_simulated_usd"].samples}
    assert shadow["openai"] > 0 and shadow["all"] == pytest.approx(shadow["openai"] + shadow["llamaparse"])
    circuits = {
        (s.labels["service"], s.labels["state"]): s.value for s in families["ingest_circuit_state"].samples
    }
    assert circuits[("openai", "closed")] == 1.0 and circuits[("openai", "open")] == 0.0
    assert sum(circuits.values()) == 2.0  # one state per service
