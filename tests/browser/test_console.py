"""The console in Chromium against a real `ingest serve`: signing in, uploading with live progress and
errors in words, documents, search, costs, and what an admin key may do that another key may not."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import Console, shoot, sign_in
from workers.runtime import Runtime
from workers.states import fail_job

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
LAMP = b"""# Lighthouse keeping

## The lamp

The keeper trims the wick every evening and polishes the brass lens until it shines.

## The log

Every passing ship goes into the logbook with the hour, the wind and the weather.
"""


def wait_completed(console: Console, user: str, job_id: str) -> None:
    """Poll until the job ends (pytest-timeout bounds one that never does); it must have completed."""
    with console.api(user) as api:
        while (job := api.get(f"/v1/jobs/{job_id}").json())["status"] not in ("completed", "failed"):
            time.sleep(0.1)
    assert job["status"] == "completed", job


def upload(console: Console, user: str, name: str, content: bytes) -> dict[str, str]:
    with console.api(user) as api:
        sent = api.post("/v1/documents", files={"file": (name, content)}).json()
    wait_completed(console, user, sent["job_id"])
    return sent


def test_a_wrong_key_is_refused_and_a_right_one_signs_in_for_this_tab_only(
    console: Console, page: Page
) -> None:
    console.key("ada")
    page.goto(console.url + "/")
    expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
    page.get_by_label("API key").fill("ik_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(re.compile("not valid"))
    assert page.evaluate("sessionStorage.length") == 0

    sign_in(page, console, "ada")
    expect(page.get_by_text("user key")).to_be_visible()
    stored = page.evaluate("[sessionStorage.getItem('ingest.apiKey'), localStorage.length, document.cookie]")
    assert stored == [console.keys["ada"], 0, ""]
    page.reload()  # the same tab keeps its session
    expect(page.get_by_role("navigation", name="Pages")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_several_files_upload_each_completes_and_refused_ones_say_why(
    start_console: Callable[..., Console], page: Page, tmp_path: Path
) -> None:
    # Four uploads a minute: the too-large file is refused before its key is read (the body cap comes before
    # auth), so it uses none of them; the others do, the refused type included.
    console = start_console(MAX_UPLOAD_MB="1", UPLOADS_PER_MINUTE="4")
    console.key("ada")
    files = {
        "lamp.md": LAMP,
        "tides.txt": b"High tide comes twice a day; the keeper writes both times in the tide table.",
        "fog.html": b"<html><body><h1>Fog</h1><p>In fog the keeper sounds the horn.</p></body></html>",
        "engine.bin": bytes(range(256)) * 8,
        "huge.txt": b"lighthouse " * 200_000,
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    sign_in(page, console, "ada")
    page.get_by_label("choose files").set_input_files([str(tmp_path / n) for n in files])

    for name in ("lamp.md", "tides.txt", "fog.html"):
        row = page.locator(f'li.file[data-file="{name}"]')
        expect(row).to_have_attribute("data-state", "completed")
        expect(row.locator(".status")).to_have_text("Completed")
        expect(row.get_by_role("progressbar")).to_have_attribute("value", "1")
    expect(page.locator('li[data-file="engine.bin"] .status')).to_have_text(
        re.compile(r"^Unsupported type: ")
    )
    expect(page.locator('li[data-file="huge.txt"] .status')).to_have_text(re.compile(r"^Too large: .*1 MB"))

    (tmp_path / "late.txt").write_bytes(b"One upload over the limit of four a minute.")
    page.get_by_label("choose files").set_input_files(str(tmp_path / "late.txt"))
    late = page.locator('li[data-file="late.txt"] .status')
    expect(late).to_have_text(re.compile(r"^Rate limited: .*\(wait \d+ s\)$"))
    with console.api("ada") as api:
        names = sorted(d["filename"] for d in api.get("/v1/documents").json()["documents"])
    assert names == ["fog.html", "lamp.md", "tides.txt"]


def test_a_search_finds_an_uploaded_passage_with_its_words_marked(console: Console, page: Page) -> None:
    console.key("ada")
    upload(console, "ada", "lamp.md", LAMP)
    upload(console, "ada", "wonderland.pdf", (SAMPLES / "carroll-wonderland.pdf").read_bytes())
    sign_in(page, console, "ada")
    page.get_by_role("link", name="Search").click()
    page.get_by_label("Query").fill("keeper polishes the brass lens")
    page.get_by_label("Top k").fill("3")
    page.get_by_role("button", name="Search").click()
    hits = page.get_by_role("list", name="Results").get_by_role("listitem")
    expect(hits).to_have_count(3)
    first = hits.first
    expect(first.get_by_role("link")).to_have_text("lamp.md")
    expect(first.locator(".heading")).to_contain_text("Lighthouse keeping")
    expect(first.locator(".score")).to_have_text(re.compile(r"^score \d+\.\d{3}$"))
    marked = {m.lower() for m in first.locator("mark").all_inner_texts()}
    assert {"keeper", "polishes", "brass", "lens"} <= marked
    expect(hits.nth(1).locator(".page")).to_have_text(re.compile(r"^pp?\. \d+"))


def test_documents_show_their_chunks_and_one_is_deleted(console: Console, page: Page) -> None:
    console.key("ada")
    console.key("bob")
    lamp = upload(console, "ada", "lamp.md", LAMP)
    upload(console, "ada", "tides.txt", b"High tide comes twice a day.")
    upload(console, "bob", "bobs.txt", b"Bob's own notes about his garden.")
    sign_in(page, console, "ada")
    page.get_by_role("link", name="Documents").click()
    rows = page.locator("table.docs tbody tr")
    expect(rows).to_have_count(2)  # never Bob's
    expect(page.get_by_role("cell", name="bobs.txt")).to_have_count(0)
    page.get_by_label("Status").select_option("failed")
    expect(rows).to_have_text(["No documents."])
    page.get_by_label("Status").select_option("completed")
    expect(rows).to_have_count(2)

    page.get_by_role("link", name="lamp.md").click()
    expect(page.get_by_role("heading", name="lamp.md")).to_be_visible()
    expect(page.locator("li.chunk .heading").first).to_contain_text("Lighthouse keeping")
    expect(page.locator("li.chunk .text").first).to_contain_text("trims the wick")

    page.get_by_role("link", name="← Documents").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete lamp.md").click()
    expect(page.get_by_role("status")).to_have_text("Deleted lamp.md.")
    expect(rows).to_have_count(1)
    with console.api("ada") as api:
        assert api.get(f"/v1/documents/{lamp['document_id']}").status_code == 404


def test_a_failed_document_is_retried_from_its_row(console: Console, page: Page, rt: Runtime) -> None:
    console.key("ada")
    sent = upload(console, "ada", "lamp.md", LAMP)
    with rt.pool.connection() as conn:  # as a worker would leave it: a stage in hand, then given up
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = %s", (sent["job_id"],))
    assert fail_job(rt, sent["job_id"], "the parser gave up: page 3 is unreadable")
    sign_in(page, console, "ada")
    page.get_by_role("link", name="Documents").click()
    row = page.locator(f'tr[data-document="{sent["document_id"]}"]')
    expect(row.locator(".badge")).to_have_text("failed")
    expect(row).to_contain_text("the parser gave up: page 3 is unreadable")
    page.get_by_role("button", name="Retry lamp.md").click()
    expect(page.get_by_role("status")).to_have_text("lamp.md is queued again.")
    wait_completed(console, "ada", sent["job_id"])
    page.reload()
    expect(row.locator(".badge")).to_have_text("completed")
    expect(page.get_by_role("button", name="Retry lamp.md")).to_have_count(0)


def test_an_admin_switches_a_mode_and_sets_a_limit(console: Console, page: Page) -> None:
    console.key("root", admin=True)
    sign_in(page, console, "root")
    expect(page.get_by_text("admin key")).to_be_visible()
    page.get_by_role("link", name="Router & health").click()
    openai = page.locator('section.service[data-service="openai"]')
    expect(openai.locator(".mode-now")).to_have_text("mock")
    expect(openai.locator("[data-circuit]")).to_have_text("closed")
    expect(page.locator("ul.checks li", has_text="database")).to_have_attribute("data-ok", "true")
    expect(page.get_by_role("cell", name="ingest", exact=True)).to_be_visible()  # the queue's depth row
    page.get_by_label("Mode of openai").select_option("hybrid")
    openai.get_by_role("button", name="Switch").click()
    expect(page.get_by_text("openai is now in hybrid mode.")).to_be_visible()
    expect(openai.locator(".mode-now")).to_have_text("hybrid")
    with console.api("root") as api:
        assert api.get("/v1/router").json()["modes"] == {"llamaparse": "mock", "openai": "hybrid"}

    page.get_by_role("link", name="Costs").click()
    page.get_by_label("Service").select_option("openai")
    page.get_by_label("Daily limit (US$)").fill("0.25")
    page.get_by_role("button", name="Set limit").click()
    expect(page.locator('tr[data-service="openai"] td').nth(2)).to_have_text("$0.250000")


def test_a_user_key_sees_no_admin_controls(console: Console, page: Page) -> None:
    console.key("ada")
    sign_in(page, console, "ada")
    expect(page.get_by_role("link", name="Router & health")).to_have_count(0)
    page.goto(console.url + "/#router")
    expect(page.get_by_role("heading", name="Upload")).to_be_visible()
    expect(page.get_by_label("Mode of openai")).to_have_count(0)
    page.get_by_role("link", name="Costs").click()
    expect(page.get_by_role("heading", name="Costs today")).to_be_visible()
    expect(page.get_by_role("heading", name="Last 30 days")).to_be_visible()
    expect(page.get_by_role("button", name="Set limit")).to_have_count(0)


def test_screenshots_of_every_page_at_desktop_and_phone_width(
    console: Console, page: Page, tmp_path: Path
) -> None:
    console.key("root", admin=True)
    wonderland = upload(
        console, "root", "carroll-wonderland.pdf", (SAMPLES / "carroll-wonderland.pdf").read_bytes()
    )
    upload(console, "root", "docker-plugins-volume.md", (SAMPLES / "docker-plugins-volume.md").read_bytes())
    upload(console, "root", "sqlite-whentouse.html", (SAMPLES / "sqlite-whentouse.html").read_bytes())
    page.goto(console.url + "/")
    shoot(page, "sign-in")
    sign_in(page, console, "root")

    (tmp_path / "lamp.md").write_bytes(LAMP)
    (tmp_path / "engine.bin").write_bytes(bytes(range(256)) * 8)
    page.get_by_label("choose files").set_input_files(
        [str(tmp_path / "lamp.md"), str(tmp_path / "engine.bin")]
    )
    expect(page.locator('li[data-file="lamp.md"]')).to_have_attribute("data-state", "completed")
    expect(page.locator('li[data-file="engine.bin"]')).to_have_attribute("data-state", "rejected")
    shoot(page, "upload")

    page.get_by_role("link", name="Documents").click()
    expect(page.locator("table.docs tbody tr")).to_have_count(4)
    shoot(page, "documents")
    page.goto(f"{console.url}/#document/{wonderland['document_id']}")
    expect(page.locator("li.chunk")).to_have_count(50)
    shoot(page, "document", full_page=False)

    page.get_by_role("link", name="Search").click()
    page.get_by_label("Query").fill("when to use SQLite for a website")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("list", name="Results").get_by_role("listitem")).to_have_count(5)
    shoot(page, "search", full_page=False)

    page.get_by_role("link", name="Costs").click()
    expect(page.locator("svg.chart")).to_be_visible()
    shoot(page, "costs")

    page.get_by_role("link", name="Router & health").click()
    expect(page.locator("section.service")).to_have_count(2)
    shoot(page, "router")


def test_the_api_docs_render_with_nothing_from_another_host(console: Console, page: Page) -> None:
    outside: list[str] = []
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1:)"),
        lambda route: (outside.append(route.request.url), route.abort()),
    )
    page.goto(console.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ingest")
    expect(page.get_by_text("/v1/documents/{document_id}/chunks")).to_be_visible()
    page.goto(console.url + "/redoc")
    expect(
        page.get_by_role("heading", name="A document's chunks with pages and headings").first
    ).to_be_attached()
    page.goto(console.url + "/")
    expect(page.get_by_label("API key")).to_be_visible()
    assert outside == []
