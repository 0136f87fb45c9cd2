"""Resolving an outbound destination once and checking it (`ingest.netguard` decides; this does the look-up).

The address returned is the one the request must connect to: resolving the name again at connect time
would let a second DNS answer (rebinding) point the same URL somewhere the check never saw.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.netguard import DestinationRefused, IPAddress, IPNetwork, Target, choose, target_of


class Unresolvable(DestinationRefused):
    """The host does not resolve now; unlike an internal address, a later try may succeed."""


@dataclass(frozen=True, slots=True)
class Destination:
    target: Target
    address: IPAddress


def addresses_of(target: Target) -> list[IPAddress]:
    """Every address the host resolves to, in the resolver's order, without repeats."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise Unresolvable("the host does not resolve") from None
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # An IPv6 sockaddr may carry a zone (fe80::1%eth0); the address alone is what is checked.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def resolve(url: str, trusted: Sequence[IPNetwork] = ()) -> Destination:
    """Parse, resolve and check `url`; raise DestinationRefused (Unresolvable when DNS has no answer)."""
    target = target_of(url)
    return Destination(target=target, address=choose(addresses_of(target), trusted))
