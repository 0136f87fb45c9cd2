"""The Supabase Storage blob store against the HTTP calls the official client really makes (respx)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from storage3.exceptions import StorageApiError

from ingest.blobs import build_blob_store
from ingest.blobs.backends.supabase import SupabaseBlobStore
from ingest.config import Settings
from ingest.errors import BlobMissing, ServiceUnavailable

URL = "https://project.supabase.co"
KEY = "service-role-key"
BUCKET = "blobs"
DATA = b"%PDF-1.7 some bytes\n" * 100
SHA = hashlib.sha256(DATA).hexdigest()
OBJECT = f"{URL}/storage/v1/object/{BUCKET}/{SHA[:2]}/{SHA[2:4]}/{SHA}"
INFO = f"{URL}/storage/v1/object/info/{BUCKET}/{SHA[:2]}/{SHA[2:4]}/{SHA}"


def storage_error(status: str, error: str, message: str, *, http_status: int = 400) -> httpx.Response:
    # Storage puts the real status in the body; the HTTP status is 400 for every client error.
    return httpx.Response(http_status, json={"statusCode": status, "error": error, "message": message})


@pytest.fixture
def store() -> SupabaseBlobStore:
    settings = Settings(
        _env_file=None, blob_backend="supabase", supabase_url=URL, supabase_key=KEY, supabase_bucket=BUCKET
    )
    built = build_blob_store(settings)
    assert isinstance(built, SupabaseBlobStore)
    return built


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    # assert_all_mocked: a call the test did not expect (even one made while building the client) fails.
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "upload.bin"
    path.write_bytes(DATA)
    return path


def test_put_uploads_the_file_once_without_upsert(
    store: SupabaseBlobStore, api: respx.MockRouter, blob: Path
) -> None:
    route = api.post(OBJECT).mock(
        return_value=httpx.Response(200, json={"Key": f"{BUCKET}/{SHA}", "Id": "1"})
    )
    store.put_file(SHA, blob)
    request = route.calls.last.request
    assert request.headers["x-upsert"] == "false"
    assert request.headers["apikey"] == KEY
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"].startswith("multipart/form-data")
    assert DATA in request.read()
    assert b"application/octet-stream" in request.read()


@pytest.mark.parametrize(
    "answer",
    [
        storage_error("409", "Duplicate", "The resource already exists"),  # older servers
        storage_error("409", "KeyAlreadyExists", "The resource already exists"),  # the error code, newer
        storage_error("409", "Duplicate", "The resource already exists", http_status=409),
    ],
)
def test_put_of_a_key_already_there_succeeds(
    store: SupabaseBlobStore, api: respx.MockRouter, blob: Path, answer: httpx.Response
) -> None:
    route = api.post(OBJECT).mock(return_value=answer)
    store.put_file(SHA, blob)  # keys are content hashes: those bytes are stored
    assert route.call_count == 1


def test_put_raises_other_errors(store: SupabaseBlobStore, api: respx.MockRouter, blob: Path) -> None:
    api.post(OBJECT).mock(
        return_value=storage_error("403", "Unauthorized", "new row violates row-level security")
    )
    with pytest.raises(StorageApiError, match="row-level security"):
        store.put_file(SHA, blob)


def test_get_bytes_downloads_the_object(store: SupabaseBlobStore, api: respx.MockRouter) -> None:
    api.get(OBJECT).mock(return_value=httpx.Response(200, content=DATA))
    assert store.get_bytes(SHA) == DATA


@pytest.mark.parametrize("error", ["not_found", "NoSuchKey"])
def test_get_bytes_of_a_missing_object_is_blob_missing(
    store: SupabaseBlobStore, api: respx.MockRouter, error: str
) -> None:
    api.get(OBJECT).mock(return_value=storage_error("404", error, "Object not found"))
    with pytest.raises(BlobMissing, match=SHA[:12]) as missing:
        store.get_bytes(SHA)
    assert "bucket" not in str(missing.value)  # which blob, never where it is kept


def test_exists_reads_the_object_info(store: SupabaseBlobStore, api: respx.MockRouter) -> None:
    route = api.get(INFO).mock(
        return_value=httpx.Response(200, json={"id": "1", "name": SHA, "size": len(DATA)})
    )
    assert store.exists(SHA) is True
    route.mock(return_value=storage_error("404", "not_found", "Object not found"))
    assert store.exists(SHA) is False


def test_exists_raises_when_the_bucket_is_missing(store: SupabaseBlobStore, api: respx.MockRouter) -> None:
    # A missing bucket is a configuration error, not a missing blob.
    api.get(INFO).mock(return_value=storage_error("404", "Bucket not found", "Bucket not found"))
    with pytest.raises(StorageApiError):
        store.exists(SHA)


def test_delete_removes_the_key(store: SupabaseBlobStore, api: respx.MockRouter) -> None:
    route = api.delete(f"{URL}/storage/v1/object/{BUCKET}").mock(return_value=httpx.Response(200, json=[]))
    store.delete(SHA)  # a missing key answers an empty list, no error
    assert json.loads(route.calls.last.request.read()) == {"prefixes": [f"{SHA[:2]}/{SHA[2:4]}/{SHA}"]}


def test_check_reads_the_bucket(store: SupabaseBlobStore, api: respx.MockRouter) -> None:
    route = api.get(f"{URL}/storage/v1/bucket/{BUCKET}")
    route.mock(
        return_value=httpx.Response(
            200,
            json={
                "id": BUCKET,
                "name": BUCKET,
                "owner": "",
                "public": False,
                "created_at": "2025-01-01T00:00:00Z",
                "updated_at": "2025-01-01T00:00:00Z",
                "file_size_limit": None,
                "allowed_mime_types": None,
            },
        )
    )
    store.check()
    route.mock(return_value=storage_error("404", "Bucket not found", "Bucket not found"))
    with pytest.raises(OSError, match=f"bucket '{BUCKET}': Bucket not found"):
        store.check()


def test_keys_must_be_hex_digests(store: SupabaseBlobStore, api: respx.MockRouter, blob: Path) -> None:
    for bad in ("../../etc/passwd", SHA.upper(), SHA[:-1]):
        with pytest.raises(ValueError):
            store.put_file(bad, blob)
    assert not api.calls


def test_settings_without_url_or_key_are_refused() -> None:
    with pytest.raises(ServiceUnavailable, match="SUPABASE_URL and SUPABASE_KEY"):
        build_blob_store(
            Settings(_env_file=None, blob_backend="supabase", supabase_url=URL, supabase_key=None)
        )
