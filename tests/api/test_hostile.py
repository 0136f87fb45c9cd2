"""Every hostile case: an acceptable status, the server healthy after it, nothing left behind by a
rejection, nothing lost of what was stored before, and no canary string ever in a stored chunk. The cases
are generated (tests/hostile_inputs.py) and, when it is beside the repository, read from the shared corpus."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests import hostile_inputs
from tests.api.conftest import (
    StreamedForm,
    blob_count,
    chunk_texts,
    count_rows,
    error_of,
    new_key,
    post_streamed,
    repeated,
    runtime_of,
    temp_files,
    text_document,
    upload,
    wait_for_job,
)
from tests.conftest import SAMPLES
from tests.corpus import HOSTILE, corpus_params

ZIP_SLIP_TARGETS = hostile_inputs.ZIP_SLIP_TARGETS
HEX_NAME = re.compile(r"^[0-9a-f]{64}$")
# The two oversize cases of the corpus's manifest: made while they are sent, never held whole.
OVERSIZE_BYTES = 110_000_000


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    hostile_inputs.write_cases(folder)
    return folder


@pytest.fixture
def client(start_client: Callable[..., TestClient]) -> TestClient:
    # One case sends 15 file names in a row: above the default 10 uploads a minute.
    return start_client(UPLOADS_PER_MINUTE="100")


def ready(client: TestClient) -> None:
    answer = client.get("/health/ready")
    assert answer.status_code == 200, answer.text


def state(client: TestClient) -> tuple[int, int]:
    return count_rows(client, "documents"), blob_count(client)


@pytest.fixture
def baseline(client: TestClient, ada: dict[str, str]) -> dict[str, Any]:
    """A document stored before the case, which the case must not disturb."""
    sent = upload(
        client, ada, text_document("baseline harbour records", paragraphs=12), "baseline.txt"
    ).json()
    assert wait_for_job(client, ada, sent["job_id"])["status"] == "completed"
    return client.get(f"/v1/documents/{sent['document_id']}", headers=ada).json()


def still_there(client: TestClient, headers: dict[str, str], baseline: dict[str, Any]) -> None:
    now = client.get(f"/v1/documents/{baseline['id']}", headers=headers).json()
    assert (now["status"], now["chunks"]) == ("completed", baseline["chunks"])


def send_case(
    client: TestClient, headers: dict[str, str], case: dict[str, Any], filename: str, folder: Path
) -> tuple[int, dict[str, Any] | None]:
    """Upload one case; return its status and, when accepted, its job once finished."""
    before = state(client)
    content = (folder / case["file"]).read_bytes()
    answer = client.post(
        "/v1/documents", headers=headers, files={"file": (filename, content, case["content_type"])}
    )
    assert answer.status_code in case["expected"]["status"], (case["id"], filename, answer.text)
    job = None
    if answer.status_code >= 400:
        error_of(answer)
        assert state(client) == before, f"{case['id']}: a rejected upload left a document or a blob"
    else:
        body = answer.json()
        assert "/" not in body["filename"] and "\\" not in body["filename"]
        job = wait_for_job(client, headers, body["job_id"])
        if job["status"] == "failed":
            assert job["error"] and "\n" not in job["error"]
    assert temp_files(client) == []
    return answer.status_code, job


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in hostile_inputs.CASES])
def test_generated_hostile_upload(
    client: TestClient, ada: dict[str, str], baseline: dict[str, Any], case: dict[str, Any], generated: Path
) -> None:
    upload_case(client, ada, baseline, case, generated)


@pytest.mark.parametrize("case", corpus_params("hostile/MANIFEST.json", "cases"))
def test_corpus_hostile_upload(
    client: TestClient, ada: dict[str, str], baseline: dict[str, Any], case: dict[str, Any]
) -> None:
    if not case.get("file"):
        pytest.skip("generated at test time: see the oversize tests below")
    upload_case(client, ada, baseline, case, HOSTILE)


def upload_case(
    client: TestClient, ada: dict[str, str], baseline: dict[str, Any], case: dict[str, Any], folder: Path
) -> None:
    slip_before = {p: p.exists() for p in ZIP_SLIP_TARGETS}
    for filename in case.get("upload_filename_variants") or [case["upload_filename"]]:
        _, job = send_case(client, ada, case, filename, folder)
        if case["expected"]["result"] == "accept":
            assert job is not None and job["status"] == "completed", (case["id"], job)
        ready(client)
        still_there(client, ada, baseline)

    stored = "\n".join(chunk_texts(client))
    for canary in case.get("canaries_never_indexed", []):
        assert canary not in stored, f"{case['id']}: {canary} was indexed"
    assert {p: p.exists() for p in ZIP_SLIP_TARGETS} == slip_before
    blobs = runtime_of(client).settings.blob_dir
    assert all(HEX_NAME.match(p.name) for p in blobs.rglob("*") if p.is_file())


def test_prompt_injection_is_stored_as_inert_text(
    client: TestClient, ada: dict[str, str], baseline: dict, generated: Path
) -> None:
    case = next(c for c in hostile_inputs.CASES if c["id"] == "prompt-injection")
    send_case(client, ada, case, case["upload_filename"], generated)
    found = client.post(
        "/v1/search", headers=ada, json={"query": "quarterly review Thursday room four"}
    ).json()
    assert "quarterly review moved to Thursday" in " ".join(found["results"][0]["text"].split())
    assert len(client.get("/v1/documents", headers=ada).json()["documents"]) == 2


@pytest.fixture
def small_limit(start_client: Callable[..., TestClient]) -> TestClient:
    # The generated cases are 110 MB against the default 100 MB; 1 MB tests the same path in a fraction.
    return start_client(MAX_UPLOAD_MB="1")


def test_oversize_with_content_length_is_413_before_the_body_is_read(small_limit: TestClient) -> None:
    ada = new_key(small_limit, "ada")
    block = b"%PDF-1.7\n" + bytes(range(256)) * 256
    form = StreamedForm("huge.pdf", "application/pdf", repeated(block, OVERSIZE_BYTES))
    length = len(form.head) + OVERSIZE_BYTES + len(form.tail)
    answer = post_streamed(small_limit, ada, form, **{"Content-Length": str(length)})
    assert answer.status_code == 413 and error_of(answer)["code"] == "too_large"
    assert form.pulled == 0
    assert state(small_limit) == (0, 0) and temp_files(small_limit) == []
    ready(small_limit)


def test_oversize_chunked_without_length_is_413_once_the_limit_is_passed(small_limit: TestClient) -> None:
    ada = new_key(small_limit, "ada")
    # The manifest's generator repeats GPL-3.txt, which the sample corpus does not carry; any licence text will do.
    licence = (SAMPLES / "Apache-2.0.txt").read_bytes()
    form = StreamedForm("huge.txt", "text/plain", repeated(licence, OVERSIZE_BYTES))
    answer = post_streamed(small_limit, ada, form)
    assert answer.status_code == 413 and error_of(answer)["code"] == "too_large"
    assert form.pulled < 2 * 1024 * 1024  # reading stopped just past the 1 MB limit
    assert state(small_limit) == (0, 0) and temp_files(small_limit) == []
    ready(small_limit)
