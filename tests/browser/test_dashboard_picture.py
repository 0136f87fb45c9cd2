"""docs/operations-dashboard.png: the dashboard's layout filled from a real scrape, after real work."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Page

from tests.browser.conftest import Console
from tests.browser.dashboard_preview import render, samples_by_name
from tests.browser.test_console import LAMP, upload

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "ingest.json"
PICTURE = ROOT / "docs" / "operations-dashboard.png"


def test_a_picture_of_the_dashboard_from_a_real_scrape(console: Console, page: Page) -> None:
    console.key("root", admin=True)
    upload(console, "root", "lamp.md", LAMP)
    upload(console, "root", "wonderland.pdf", (ROOT / "samples" / "carroll-wonderland.pdf").read_bytes())
    with console.api("root") as api:
        api.put("/v1/costs/limits", json={"limit_usd": "2", "service": "openai"})
        scrape = api.get("/metrics").text
    samples = samples_by_name([scrape])
    assert samples["ingest_documents_completed_total"][0].value == 2
    assert samples["ingest_chunks_embedded_total"][0].value > 2
    page.set_viewport_size({"width": 1400, "height": 900})
    page.set_content(render(json.loads(DASHBOARD.read_text()), samples))
    assert page.locator("section").count() == len(json.loads(DASHBOARD.read_text())["panels"])
    page.screenshot(path=str(PICTURE), full_page=True)
