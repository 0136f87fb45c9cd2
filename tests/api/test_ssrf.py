"""Server-side request forgery: a callback_url can point the server at nothing inside its network.

Listeners on loopback stand for internal services. With no allow-list, every spelling of an internal
address is refused at upload (400, nothing stored, nothing sent), a name that moves inside after the
upload is refused at delivery, and what is recorded never says whether a port answered. With the
operator's allow-list, the tests' own loopback receivers are reached as before.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingest import destinations, netguard
from ingest.netguard import Target
from ingest.store import webhooks
from tests.api.conftest import count_rows, error_of, new_key, runtime_of, text_document, upload, wait_for_job

SECRET = "whsec_" + base64.b64encode(bytes(range(7, 39))).decode()
WAIT_S = 30


@dataclass
class Listener:
    """An HTTP server standing for an internal service: it records every connection and request."""

    family: socket.AddressFamily = socket.AF_INET
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    connections: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    def touched(self) -> bool:
        return self.connections > 0 or bool(self.requests)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    servers: list[ThreadingHTTPServer] = []

    def start(family: socket.AddressFamily = socket.AF_INET, status: int = 200, **headers: str) -> Listener:
        state = Listener(family=family, status=status, headers=headers)

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                state.connections += 1
                super().setup()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                state.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(state.status)
                for name, value in state.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            address_family = family

        server = Server(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0), Handler)
        state.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the tests control (what a DNS server of the attacker's would answer); others resolve as usual."""
    names: dict[str, list[str]] = {}
    resolve = destinations.addresses_of

    def addresses_of(target: Target) -> list[netguard.IPAddress]:
        if target.host in names:
            return [ipaddress.ip_address(a) for a in names[target.host]]
        return resolve(target)

    monkeypatch.setattr(destinations, "addresses_of", addresses_of)
    return names


def attempts(client: TestClient, document_id: str) -> list[tuple[int | None, str | None]]:
    with runtime_of(client).pool.connection() as conn:
        rows = webhooks.attempts_for_document(conn, document_id)  # type: ignore[arg-type]
    return [(a.status_code, a.error) for a in rows]


def wait_for_attempts(
    client: TestClient, document_id: str, count: int
) -> list[tuple[int | None, str | None]]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        made = attempts(client, document_id)
        if len(made) >= count:
            return made
        time.sleep(0.05)
    raise AssertionError(f"{len(attempts(client, document_id))} callback attempts recorded, expected {count}")


def internal_urls(port: int, port6: int | None) -> list[str]:
    """Every spelling of an address inside the network the review tried, and the usual internal targets."""
    urls = [
        f"http://127.0.0.1:{port}/hook",
        f"http://localhost:{port}/hook",  # a name the real resolver maps to loopback
        f"http://internal.example.test:{port}/hook",  # a name an attacker's DNS maps to loopback
        f"http://2130706433:{port}/hook",
        f"http://0x7f000001:{port}/hook",
        f"http://127.1:{port}/hook",
        f"http://0.0.0.0:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/hook",
        f"https://127.0.0.1:{port}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://[fe80::1]/",
    ]
    if port6 is not None:
        urls.append(f"http://[::1]:{port6}/hook")
    return urls


def test_every_internal_address_form_is_refused_at_upload_and_nothing_is_sent(
    start_client: Callable[..., TestClient], listen: Callable[..., Listener], dns: dict[str, list[str]]
) -> None:
    client = start_client(CALLBACK_SIGNING_SECRET=SECRET, UPLOADS_PER_MINUTE="1000")
    ada = new_key(client, "ada")
    listener = listen()
    listener6 = listen(socket.AF_INET6) if ipv6_loopback() else None
    dns["internal.example.test"] = ["127.0.0.1"]
    closed = closed_port()

    for i, url in enumerate(internal_urls(listener.port, listener6.port if listener6 else None)):
        answer = upload(client, ada, text_document(f"probe {i}"), callback_url=url)
        assert answer.status_code == 400, (url, answer.text)
        message = error_of(answer)["message"]
        assert message.startswith("callback_url: the URL is not allowed: it points to"), (url, message)
        # An open port and a closed one are refused alike: the answer cannot map the network.
        closed_answer = upload(
            client,
            ada,
            text_document(f"probe {i}"),
            callback_url=url.replace(f":{listener.port}/", f":{closed}/"),
        )
        assert error_of(closed_answer)["message"] == message
    assert count_rows(client, "documents") == 0
    assert not listener.touched() and not (listener6 and listener6.touched())


def test_a_name_moved_inside_after_the_upload_is_refused_at_delivery_without_telling_ports_apart(
    start_client: Callable[..., TestClient], listen: Callable[..., Listener], dns: dict[str, list[str]]
) -> None:
    client = start_client(CALLBACK_SIGNING_SECRET=SECRET, CALLBACK_BACKOFF_S="0.05")
    ada = new_key(client, "ada")
    listener = listen()
    dns["rebind.example.test"] = ["93.184.215.14"]  # public when the upload is checked
    open_doc = upload(
        client,
        ada,
        text_document("rebinding one"),
        callback_url=f"http://rebind.example.test:{listener.port}/",
    )
    closed_doc = upload(
        client,
        ada,
        text_document("rebinding two"),
        callback_url=f"http://rebind.example.test:{closed_port()}/",
    )
    assert (open_doc.status_code, closed_doc.status_code) == (202, 202)
    dns["rebind.example.test"] = ["127.0.0.1"]  # and loopback when the callback is due
    recorded = []
    for sent in (open_doc.json(), closed_doc.json()):
        assert wait_for_job(client, ada, sent["job_id"])["status"] == "completed"
        recorded.append(wait_for_attempts(client, sent["document_id"], 1))
    refused = (None, "not sent: the URL is not allowed: it points to a loopback address")
    assert recorded == [[refused], [refused]]  # the same for the open and the closed port, and given up
    assert not listener.touched()


def test_the_operator_s_allow_list_lets_loopback_receivers_through_without_redirects(
    start_client: Callable[..., TestClient], listen: Callable[..., Listener]
) -> None:
    client = start_client(
        CALLBACK_SIGNING_SECRET=SECRET,
        CALLBACK_MAX_ATTEMPTS="1",
        OUTBOUND_ALLOW_NETWORKS="127.0.0.0/8, ::1/128",
    )
    ada = new_key(client, "ada")
    receiver = listen()
    elsewhere = listen()
    redirecting = listen(status=302, Location=f"http://127.0.0.1:{elsewhere.port}/")
    delivered = upload(client, ada, text_document("allowed"), callback_url=f"http://127.1:{receiver.port}/in")
    moved = upload(
        client, ada, text_document("redirected"), callback_url=f"http://localhost:{redirecting.port}/"
    )
    assert (delivered.status_code, moved.status_code) == (202, 202)

    assert wait_for_attempts(client, delivered.json()["document_id"], 1) == [(200, None)]
    assert receiver.requests[0]["host"] == f"127.0.0.1:{receiver.port}"
    assert wait_for_attempts(client, moved.json()["document_id"], 1) == [(302, "the receiver answered 302")]
    assert (
        len(redirecting.requests) == 1 and redirecting.requests[0]["host"] == f"localhost:{redirecting.port}"
    )
    assert not elsewhere.touched()  # the redirect was not followed
