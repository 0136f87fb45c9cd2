"""The one HTTP client for requests a user or a vendor can point somewhere (callbacks, budget alerts).

Each request: http(s) only; the host resolved once and every address checked (`ingest.destinations`,
`ingest.netguard`); the connection made to that checked address, with the URL's own name kept for the
Host header and for TLS (SNI and certificate check), so a second DNS answer cannot redirect it; no
redirects followed; no proxy from the environment (it would connect elsewhere); a short timeout; at most
`MAX_ANSWER_BYTES` of the answer read, the rest dropped with the connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from ingest.destinations import Destination, resolve
from ingest.netguard import IPNetwork

MAX_ANSWER_BYTES = 64 * 1024


class OutboundFailed(Exception):
    """The request was sent (or tried) and failed: a transport error or timeout. One line, no secrets."""


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    body: bytes  # at most MAX_ANSWER_BYTES


def _pinned_request(
    client: httpx.Client, url: str, destination: Destination, content: bytes, headers: Mapping[str, str]
) -> httpx.Request:
    original = httpx.URL(url)
    literal = _is_address(destination.target.host)
    request = client.build_request(
        "POST", original.copy_with(host=str(destination.address)), content=content, headers=dict(headers)
    )
    # The checked address in the URL; the name the user gave where the receiver and TLS expect it.
    request.headers["host"] = original.netloc.decode("ascii")
    if original.scheme == "https" and not literal:
        request.extensions["sni_hostname"] = original.raw_host.decode("ascii")
    return request


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def post(
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
    trusted: Sequence[IPNetwork] = (),
) -> Answer:
    """POST `content` to `url` once. Raises DestinationRefused (nothing sent) or OutboundFailed."""
    destination = resolve(url, trusted)
    with httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client:
        request = _pinned_request(client, url, destination, content, headers)
        try:
            response = client.send(request, stream=True)
            try:
                body = _read_capped(response)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            detail = " ".join(str(exc).split())
            message = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            raise OutboundFailed(message[:300]) from None
    return Answer(status_code=response.status_code, body=body)


def _read_capped(response: httpx.Response) -> bytes:
    received = bytearray()
    for piece in response.iter_raw():
        received.extend(piece[: MAX_ANSWER_BYTES - len(received)])
        if len(received) >= MAX_ANSWER_BYTES:
            break
    return bytes(received)
