"""A receiver that never answers holds callback threads only: another user's document still completes.

The review saw eight callbacks to a receiver taking 30 s delay another user's document from 0.12 s to
14.5 s: callbacks ran on the ingestion threads. Here a receiver holds every callback it gets until the
test lets go, and a document of another user must complete while it still holds them.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api import conftest as api
from tests.api.conftest import new_key, text_document, upload

start_client = api.start_client  # the API's app fixture: pytest finds fixtures in a module's namespace

SECRET = "whsec_" + base64.b64encode(bytes(range(40, 72))).decode()
WAIT_S = 60


@dataclass
class StalledReceiver:
    url: str = ""
    release: threading.Event = field(default_factory=threading.Event)
    holding: int = 0  # requests received and not answered yet
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_holding(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while self.holding < count:
            assert time.monotonic() < deadline, f"the receiver holds {self.holding} callbacks, not {count}"
            time.sleep(0.05)


@pytest.fixture
def stalled() -> Iterator[StalledReceiver]:
    state = StalledReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.holding += 1
            state.release.wait()
            with state.lock:
                state.holding -= 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/slow"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def wait_completed(client: TestClient, headers: dict[str, str], job_id: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while (job := client.get(f"/v1/jobs/{job_id}", headers=headers).json())["status"] != "completed":
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"job {job_id} waited behind the stalled callbacks"
        time.sleep(0.1)


def test_a_stalled_receiver_delays_no_other_document(
    start_client: Callable[..., TestClient], stalled: StalledReceiver
) -> None:
    client = start_client(
        CALLBACK_SIGNING_SECRET=SECRET,
        OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8",
        CALLBACK_TIMEOUT_S="120",  # longer than this test waits: the receiver holds its requests throughout
        WORKER_THREADS="2",
        CALLBACK_WORKER_THREADS="1",
    )
    try:
        ada, bob = new_key(client, "ada"), new_key(client, "bob")
        sent = [
            upload(client, ada, text_document(f"harbour {i}"), callback_url=stalled.url).json()
            for i in range(4)
        ]
        for job in sent:
            wait_completed(client, ada, job["job_id"])
        # Four callbacks due, each held by the receiver as long as it gets them: more than all the threads.
        stalled.wait_holding(1)

        other = upload(client, bob, text_document("a document of bob's")).json()
        wait_completed(client, bob, other["job_id"])
        assert stalled.holding >= 1 and not stalled.release.is_set()  # completed while the receiver held on
    finally:
        stalled.release.set()
