"""What a user is charged never shows what another user ingested: the embedding cache is per user, so a
text another user already embedded costs exactly what a never-seen text of the same size does."""

from __future__ import annotations

from decimal import Decimal

from fastapi.testclient import TestClient

from ingest import tokens
from tests.api.conftest import new_key, text_document, upload, wait_for_job


def cost_of(client: TestClient, headers: dict[str, str], content: bytes, filename: str) -> tuple[str, str]:
    answer = upload(client, headers, content, filename=filename)
    assert answer.status_code == 202, answer.text
    assert wait_for_job(client, headers, answer.json()["job_id"])["status"] == "completed"
    doc = client.get(f"/v1/documents/{answer.json()['document_id']}", headers=headers).json()
    return doc["cost_usd"], doc["simulated_cost_usd"]


def test_a_text_another_user_ingested_costs_what_a_new_text_of_its_size_costs(client: TestClient) -> None:
    ada, bob = new_key(client, "ada"), new_key(client, "bob")
    seen = text_document("harbor lantern", paragraphs=40)
    unseen = text_document("glacier pepper", paragraphs=40)
    # Same size: the same bytes (pages of the parse) and the same tokens (the embedding's price).
    assert len(seen) == len(unseen)
    assert tokens.count_tokens(seen.decode().split("\n\n")) == tokens.count_tokens(
        unseen.decode().split("\n\n")
    )

    cost_of(client, ada, seen, "ada.txt")
    bob_seen = cost_of(client, bob, seen, "seen.txt")
    bob_unseen = cost_of(client, bob, unseen, "unseen.txt")
    assert bob_seen == bob_unseen
    assert Decimal(bob_seen[1]) > 0  # mock mode: the shadow price of parse and embedding, not nothing

    # The cache still serves its own user: Ada's text again, under a new name, pays for no embedding.
    ada_again = cost_of(client, ada, seen + b"\n", "ada-again.txt")
    assert Decimal(ada_again[1]) < Decimal(bob_seen[1])
