"""Which network addresses an outbound request may reach. Pure: plain functions over addresses, no I/O.

Anything a user or a vendor can point the server at (a callback URL, a budget alert webhook) must not
reach inside the network it runs in. So a destination is resolved once, every address it resolves to is
checked here, and the request connects to the checked address (`ingest.outbound`). Refused: loopback,
private, link-local, shared (CGNAT), multicast, reserved, unspecified and documentation ranges, in IPv4 and
IPv6, including IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, 6to4, NAT64). Odd IPv4
spellings (`2130706433`, `0x7f000001`, `127.1`) need no rule of their own: they are checked as the
address the resolver makes of them.

An operator may trust ranges (`INGEST_OUTBOUND_ALLOW_NETWORKS`), e.g. a receiver on the private network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"http": 80, "https": 443}
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationRefused(ValueError):
    """A URL the server will not send to; the message says why in one line, naming no address."""


@dataclass(frozen=True, slots=True)
class Target:
    """The parts of an http(s) URL an outbound request needs."""

    scheme: str
    host: str  # as written, lower case, IPv6 without brackets
    port: int

    @property
    def default_port(self) -> bool:
        return SCHEMES[self.scheme] == self.port


def target_of(url: str) -> Target:
    """Parse `url`; refuse anything but http(s) with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise DestinationRefused("the URL is malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise DestinationRefused("only http and https URLs are allowed")
    if not parts.hostname:
        raise DestinationRefused("the URL has no host")
    return Target(scheme=scheme, host=parts.hostname.lower(), port=port or SCHEMES[scheme])


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def why_internal(address: IPAddress) -> str | None:
    """What kind of non-public address this is, or None for a public unicast one."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = why_internal(inner)
        if reason is not None:
            return reason
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "an address that is not public"
    return None


def refusal(address: IPAddress, trusted: Sequence[IPNetwork] = ()) -> str | None:
    """Why a request may not go to `address`; None when it may (public, or in a trusted range)."""
    candidates = [address]
    inner = embedded_ipv4(address)
    if inner is not None:
        candidates.append(inner)
    for network in trusted:
        if any(a.version == network.version and a in network for a in candidates):
            return None
    reason = why_internal(address)
    return f"it points to {reason}" if reason else None


def choose(addresses: Sequence[IPAddress], trusted: Sequence[IPNetwork] = ()) -> IPAddress:
    """The address to connect to among those a host resolved to; every one must be allowed, so a name
    that mixes public and internal addresses is refused whichever one a connection would have used."""
    if not addresses:
        raise DestinationRefused("the host does not resolve")
    for address in addresses:
        reason = refusal(address, trusted)
        if reason is not None:
            raise DestinationRefused(f"the URL is not allowed: {reason}")
    return addresses[0]
