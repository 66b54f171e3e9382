"""Which network addresses APM may reach on someone's say-so (webhook targets, git remotes).

A URL typed by a user must not make APM's servers talk to the inside of their own network: loopback,
private, link-local (the cloud metadata service at 169.254.169.254), multicast and other non-public
addresses are refused unless the operator allows a network in settings.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_INTERNAL_KINDS = (
    ("loopback", "a loopback address"),
    ("unspecified", "an unspecified address"),
    ("link_local", "a link-local address"),
    ("multicast", "a multicast address"),
    ("private", "a private address"),
    ("reserved", "a reserved address"),
)


def networks_parse(values: Iterable[str], *, setting: str) -> list[Network]:
    """The networks of an allow-list setting; ``ImproperlyConfigured`` names the setting if one is bad."""
    try:
        return [ipaddress.ip_network(cidr, strict=False) for cidr in values]
    except ValueError as exc:
        raise ImproperlyConfigured(f"{setting} holds an invalid network: {exc}") from exc


def address_refusal(address: Address) -> str | None:
    """Why ``address`` is internal (None: it is a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:  # fec0::/10, deprecated but still routed inside some networks
            return "a site-local address"
        # ::ffff:127.0.0.1 reaches 127.0.0.1, and 6to4 (2002:7f00:1::) and Teredo addresses carry an
        # IPv4 address a relay would reach: judge the IPv4 address inside.
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            reason = address_refusal(embedded)
            if reason is not None:
                return reason
            address = embedded
    # The most telling name first: 169.254.169.254 is private too, but link-local says why it matters.
    for kind, words in _INTERNAL_KINDS:
        if getattr(address, f"is_{kind}"):
            return words
    if not address.is_global:
        return "a non-public address"  # shared (carrier-grade NAT) and other special-purpose ranges
    return None


def host_addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in resolver order; ``OSError``/``UnicodeError`` if it does not."""
    addresses: list[str] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id (fe80::1%eth0)
        if text not in addresses:
            addresses.append(text)
    return addresses


def address_first_internal(addresses: Iterable[str], *, allowed: list[Network]) -> tuple[str, str] | None:
    """The first of ``addresses`` that may not be reached and why (None: every one may).

    ANY internal address refuses the host: a name resolving to a public and a private address could
    otherwise be used to reach the private one. Callers that answer people whom the resolver's answers
    are no business of say only the reason, and log the address.
    """
    for text in addresses:
        address = ipaddress.ip_address(text)
        reason = address_refusal(address)
        if reason is not None and not any(address in network for network in allowed):
            return text, reason
    return None


def host_is_address(host: str) -> bool:
    """Whether ``host`` is an IP address literal (``10.0.0.1``, ``::1``) rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_refusal(host: str, address: str, reason: str) -> str:
    """Why ``host`` may not be reached, for the person who typed it: the kind of address it resolves to.

    The address itself is named only when ``host`` is that address, as typed. What a name resolves to
    inside APM's network is none of their business: answering it would map the internal DNS for anyone
    who may save a URL. Callers log the address for operators.
    """
    if host_is_address(host):
        return f"The host {host} resolves to {address}, {reason}"
    return f"The host {host} resolves to {reason}"
