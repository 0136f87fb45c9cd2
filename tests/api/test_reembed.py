"""A migration to another embedding model while a search loop hits the API every 100 ms: every search
answers, each from exactly one space (old until the switch, new from then on, never back); documents
added during the run are found after the switch; a rollback returns every search to the old space, with
what was added after the switch; the previous space can then be freed. All over real HTTP, through the
admin route, the in-process workers and the OpenAI stand-in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest

from mocks.faults import FaultPlan
from tests.api.conftest import LiveServer, new_key, runtime_of, text_document, wait_for_job

OLD, NEW = "text-embedding-3-small/64", "text-embedding-3-large/48"
SETTINGS = {
    "OPENAI_EMBEDDING_DIMENSIONS": "64",
    "EMBED_BATCH_CHUNKS": "2",
    "CHUNK_TOKENS": "32",
    "CHUNK_OVERLAP": "0",
}


@dataclass(frozen=True)
class Answer:
    status: int
    space: str | None
    results: int


class SearchLoop:
    """Searches every 100 ms on a thread of its own until stopped; keeps every answer in order."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)

    def _run(self, url: str, headers: dict[str, str]) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            while not self._stop.is_set():
                r = http.post("/v1/search", json={"query": "notes about glaciers", "top_k": 3})
                body = r.json()
                self.answers.append(Answer(r.status_code, body.get("space"), len(body.get("results", []))))
                self._stop.wait(0.1)

    def __enter__(self) -> SearchLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def ingest(http: httpx.Client, headers: dict[str, str], topic: str) -> str:
    sent = http.post(
        "/v1/documents",
        headers=headers,
        files={"file": (f"{topic}.txt", text_document(topic, 8), "text/plain")},
    ).json()
    assert wait_for_job(http, headers, sent["job_id"])["status"] == "completed"  # type: ignore[arg-type]
    return str(sent["document_id"])


def found(http: httpx.Client, headers: dict[str, str], query: str) -> tuple[str | None, set[str]]:
    r = http.post("/v1/search", headers=headers, json={"query": query, "top_k": 5, "mode": "keyword"})
    assert r.status_code == 200, r.text
    return r.json()["space"], {hit["document_id"] for hit in r.json()["results"]}


def wait_for_run(http: httpx.Client, admin: dict[str, str], status: str = "switched") -> dict:
    while True:
        run = http.get("/v1/admin/reembed", headers=admin).json()["last_run"]
        if run["status"] != "building":
            assert run["status"] == status, run
            return run
        time.sleep(0.1)


def vectors_per_chunk(server: LiveServer, space: str) -> tuple[int, int, int]:
    """(chunks, chunks with exactly one vector in the space's table, chunks whose space it is)."""
    model, dims = space.split("/")
    with runtime_of(server).pool.connection() as conn:
        table = conn.execute(
            "SELECT table_name FROM embedding_spaces WHERE model = %s AND dimensions = %s", (model, int(dims))
        ).fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        one = conn.execute(
            f"SELECT count(*) FROM chunks c WHERE (SELECT count(*) FROM {table} v WHERE v.chunk_id = c.id) = 1"
        ).fetchone()[0]
        owned = conn.execute(
            "SELECT count(*) FROM chunks c JOIN embedding_spaces s ON s.id = c.space_id"
            " WHERE s.model = %s AND s.dimensions = %s",
            (model, int(dims)),
        ).fetchone()[0]
    return chunks, one, owned


@pytest.mark.slow
def test_a_migration_under_a_search_loop_switches_at_once_and_rolls_back(
    standins: object, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(**SETTINGS)
    admin, ada = new_key(server, "root", admin=True), new_key(server, "ada")
    injector = standins.state.openai.state.injector  # type: ignore[attr-defined]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert (
            http.put("/v1/router", headers=admin, json={"mode": "real", "service": "openai"}).status_code
            == 200
        )
        docs = [ingest(http, ada, topic) for topic in ("glaciers", "volcanoes", "tides")]
        assert found(http, ada, "glaciers") == (OLD, {docs[0]})

        quote = http.post(
            "/v1/admin/reembed",
            headers=admin,
            json={"model": "text-embedding-3-large", "dimensions": 48, "estimate": True},
        )
        assert quote.status_code == 202 and quote.json()["run"] is None
        q = quote.json()["quote"]
        chunks, _, _ = vectors_per_chunk(server, OLD)
        assert (q["source"], q["target"], q["chunks"], q["cached_texts"]) == (OLD, NEW, chunks, 0)
        assert Decimal(q["usd"]) > 0
        assert (
            http.get("/v1/admin/reembed", headers=admin).json()["last_run"] is None
        )  # an estimate starts nothing
        refused = http.post("/v1/admin/reembed", headers=ada, json={"model": "text-embedding-3-large"})
        assert refused.status_code == 403

        injector.plan = FaultPlan(latency_ms=150)  # slow enough that the run spans many searches
        with SearchLoop(server.url, ada) as loop:
            started = http.post(
                "/v1/admin/reembed", headers=admin, json={"model": "text-embedding-3-large", "dimensions": 48}
            )
            assert started.status_code == 202, started.text
            assert started.json()["run"]["status"] == "building"
            again = http.post(
                "/v1/admin/reembed", headers=admin, json={"model": "text-embedding-3-large", "dimensions": 48}
            )
            assert again.status_code == 409  # one run at a time
            added = ingest(http, ada, "zeppelins")  # during the run
            during = http.get("/v1/admin/reembed", headers=admin).json()["last_run"]
            run = wait_for_run(http, admin)
            time.sleep(1.0)  # searches after the switch
        assert during["status"] == "building", "the document was added after the run ended: no overlap"
        assert run["done"] == run["total"] == vectors_per_chunk(server, NEW)[0]
        assert Decimal(run["charged_usd"]) > 0

        answers = loop.answers
        assert answers and all(a.status == 200 and a.results > 0 for a in answers), answers
        spaces = [a.space for a in answers]
        assert set(spaces) == {OLD, NEW}, spaces
        first_new = spaces.index(NEW)
        assert spaces[first_new:] == [NEW] * (len(spaces) - first_new)  # never back to the old space
        chunks, one, owned = vectors_per_chunk(server, NEW)
        assert chunks == one == owned  # every chunk, the added document's too, has exactly one vector there
        assert found(http, ada, "zeppelins") == (NEW, {added})

        # The run's calls are charged once each, at the new model's price.
        with runtime_of(server).pool.connection() as conn:
            rows = conn.execute(
                "SELECT key, state, amount_usd, usage FROM cost_entries WHERE stage = 'reembed' AND NOT simulated"
            ).fetchall()
        prices = runtime_of(server).router.meter.prices
        assert rows and {state for _, state, _, _ in rows} == {"charged"}
        assert len({key for key, _, _, _ in rows}) == len(rows)
        for _, _, amount, usage in rows:
            assert usage["model"] == "text-embedding-3-large"
            assert amount == prices.tokens_usd(usage["tokens"], "text-embedding-3-large")
        assert sum(amount for _, _, amount, _ in rows) == Decimal(run["charged_usd"])

        # After the switch new documents are embedded with the new model only; a rollback embeds them in
        # the old space too (nothing else: its vectors were kept), then switches back.
        injector.plan = FaultPlan()
        late = ingest(http, ada, "quokkas")
        assert found(http, ada, "quokkas") == (NEW, {late})
        state = http.get("/v1/admin/reembed", headers=admin).json()
        assert (state["active"], state["previous"]) == (NEW, OLD)
        back = http.post("/v1/admin/reembed/rollback", headers=admin)
        assert back.status_code == 202, back.text
        late_chunks = back.json()["quote"]["chunks"]
        assert late_chunks == vectors_per_chunk(server, NEW)[0] - chunks  # only the late document's
        wait_for_run(http, admin)
        assert found(http, ada, "quokkas") == (OLD, {late})
        assert found(http, ada, "zeppelins") == (OLD, {added})
        chunks, one, owned = vectors_per_chunk(server, OLD)
        assert chunks == one == owned

        # Freeing the previous (now the large) space: no rollback after it.
        dropped = http.delete("/v1/admin/reembed/previous", headers=admin)
        assert dropped.status_code == 200 and dropped.json()["previous"] is None
        assert vectors_per_chunk(server, NEW)[1] == 0
        assert http.post("/v1/admin/reembed/rollback", headers=admin).status_code == 409
        assert found(http, ada, "glaciers") == (OLD, {docs[0]})


@pytest.mark.slow
def test_a_when_cheapest_run_over_the_api_shows_its_batch_and_switches(
    standins: object, start_server: Callable[..., LiveServer]
) -> None:
    batches = standins.state.openai.state.batches  # type: ignore[attr-defined]
    server = start_server(**SETTINGS, SWEEP_INTERVAL_S="0.2", BATCH_POLL_S="0.05")
    admin, ada = new_key(server, "root", admin=True), new_key(server, "ada")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        http.put("/v1/router", headers=admin, json={"mode": "real", "service": "openai"})
        ingest(http, ada, "glaciers")
        body = {"model": "text-embedding-3-large", "dimensions": 48, "estimate": True, "when_cheapest": True}
        q = http.post("/v1/admin/reembed", headers=admin, json=body).json()["quote"]
        assert Decimal(q["batch_usd"]) * 2 == Decimal(q["usd"]) > 0  # both prices quoted
        bad = http.post("/v1/admin/reembed", headers=admin, json={**body, "batch_fallback": "later"})
        assert bad.status_code == 400  # malformed: nothing starts

        batches.delay_s = 3600  # the batch stays in progress until the test lets it finish
        started = http.post("/v1/admin/reembed", headers=admin, json={**body, "estimate": False})
        assert started.status_code == 202, started.text
        run = started.json()["run"]
        assert run["route"] == "batch" and Decimal(run["quoted_usd"]) == Decimal(q["batch_usd"])
        while (run := http.get("/v1/admin/reembed", headers=admin).json()["last_run"])["batch_id"] is None:
            time.sleep(0.1)
        assert run["status"] == "building" and run["batch_id"] in {b.id for b in batches.batches.values()}
        assert run["batch_deadline"] is not None
        batches.delay_s = 0
        done = wait_for_run(http, admin)
        assert Decimal(done["charged_usd"]) == Decimal(q["batch_usd"])  # the stand-in counts as the quote
        assert found(http, ada, "glaciers")[0] == NEW
    assert len(batches.batches) == 1
