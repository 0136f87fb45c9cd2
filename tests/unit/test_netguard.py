"""The outbound destination check as plain functions: which addresses a callback or alert may reach."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from ingest import outbound
from ingest.destinations import Destination
from ingest.netguard import DestinationRefused, choose, refusal, target_of

LOOPBACK_FORMS = ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "2002:7f00:1::1"]
INTERNAL = {
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fd00::1": "private",
    "169.254.169.254": "link-local",  # the cloud metadata service
    "fe80::1": "link-local",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "100.64.0.1": "not public",  # shared address space (carrier-grade NAT)
    "192.0.2.1": "private",  # documentation
    "::ffff:10.0.0.1": "private",
    "64:ff9b::a9fe:a9fe": "link-local",  # NAT64 of 169.254.169.254
}


@pytest.mark.parametrize("address", LOOPBACK_FORMS)
def test_every_form_of_loopback_is_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) == "it points to a loopback address"


@pytest.mark.parametrize(("address", "kind"), INTERNAL.items())
def test_internal_ranges_are_refused_with_their_kind(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"])
def test_public_unicast_is_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_a_trusted_range_lets_its_addresses_through_and_only_those() -> None:
    trusted = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.20.0.0/16")]
    assert refusal(ipaddress.ip_address("127.0.0.1"), trusted) is None
    assert (
        refusal(ipaddress.ip_address("::ffff:127.0.0.1"), trusted) is None
    )  # the mapped form of a trusted one
    assert refusal(ipaddress.ip_address("10.20.9.9"), trusted) is None
    assert refusal(ipaddress.ip_address("10.21.0.1"), trusted) == "it points to a private address"
    assert refusal(ipaddress.ip_address("::1"), trusted) == "it points to a loopback address"


def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    public, internal = ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.7")
    assert choose([public]) == public
    with pytest.raises(DestinationRefused, match="private"):
        choose([public, internal])
    with pytest.raises(DestinationRefused, match="does not resolve"):
        choose([])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("http:///path-only", "no host"),
        ("http://example.com:99999/", "malformed"),
    ],
)
def test_only_http_urls_with_a_host(url: str, message: str) -> None:
    with pytest.raises(DestinationRefused, match=message):
        target_of(url)


def test_target_keeps_the_name_and_the_default_port() -> None:
    assert target_of("HTTPS://Hooks.Example.com/x").host == "hooks.example.com"
    assert target_of("https://hooks.example.com/x").port == 443
    assert target_of("http://[::1]:8080/").host == "::1"


def test_the_request_goes_to_the_checked_address_under_the_url_s_own_name() -> None:
    url = "https://hooks.example.com:8443/in?x=1"
    destination = Destination(target_of(url), ipaddress.ip_address("93.184.215.14"))
    with httpx.Client() as client:
        request = outbound._pinned_request(
            client, url, destination, b"{}", {"content-type": "application/json"}
        )
    assert str(request.url) == "https://93.184.215.14:8443/in?x=1"  # no second look-up of the name
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"  # TLS checks the name's certificate
