"""Who may read the metrics: Prometheus with the bearer token, or a scraper from an allowed network.

Metrics name views, tasks, queue depths and error rates: enough to map the service and to watch an
attack work. Both the web process's ``/metrics`` and the worker pods' metrics server
(monitoring.worker_metrics) ask this module, so one rule holds wherever they are read.

- ``APM_METRICS_TOKEN``: ``Authorization: Bearer <token>`` admits a request (compared in constant time).
- ``APM_METRICS_ALLOWED_NETWORKS``: comma-separated CIDRs; a request from one of them is admitted without
  the token. The address is the connection's own, never ``X-Forwarded-For``: Prometheus scrapes the pods
  directly, and anything that reaches a pod's port could write any address in that header.
- Either one admits. With neither set, production refuses every request (403, and ``check --deploy``
  warns); the embedded default serves them, as ``make run`` has no Prometheus to configure.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class MetricsAccess:
    """The configured rule: a token, networks, and whether anything is served without either."""

    token: str = ""
    networks: tuple[Network, ...] = ()
    open_without_credentials: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.token or self.networks)


@dataclass(frozen=True)
class Decision:
    status: Literal[200, 401, 403]
    reason: str

    @property
    def allowed(self) -> bool:
        return self.status == 200


def metrics_access_of(settings: Any) -> MetricsAccess:
    """The rule Django's settings configure (APM_METRICS_*): the web process and the workers' server."""
    return MetricsAccess(
        token=settings.APM_METRICS_TOKEN,
        networks=networks_parse(settings.APM_METRICS_ALLOWED_NETWORKS),
        open_without_credentials=settings.APM_METRICS_OPEN_WITHOUT_CREDENTIALS,
    )


def networks_parse(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (``10.0.0.0/8``) or single addresses; a malformed entry raises ValueError naming it."""
    networks = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as error:
            raise ValueError(f"APM_METRICS_ALLOWED_NETWORKS: {text!r} is not a network ({error})") from error
    return tuple(networks)


def _address_in(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    # An IPv4 client seen through an IPv6 socket (::ffff:10.0.0.1) belongs to the IPv4 networks too.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == network.version and ip in network for network in networks)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()


def metrics_access_decide(  # noqa: PLR0911  (one return per answer reads best)
    access: MetricsAccess, *, authorization: str | None, address: str | None
) -> Decision:
    """200 to serve the metrics; 401 when a token is wanted and none was sent; 403 otherwise."""
    if not access.configured:
        if access.open_without_credentials:
            return Decision(200, "open")
        return Decision(403, "neither APM_METRICS_TOKEN nor APM_METRICS_ALLOWED_NETWORKS is set")
    if _address_in(address, access.networks):
        return Decision(200, "network")
    presented = _bearer(authorization)
    if access.token and presented is not None:
        if hmac.compare_digest(presented.encode(), access.token.encode()):
            return Decision(200, "token")
        return Decision(403, "wrong token")
    if access.token:
        return Decision(401, "no token")
    return Decision(403, "address not allowed")


# What a 401 carries (RFC 6750): the scheme Prometheus' `authorization` must use.
WWW_AUTHENTICATE = 'Bearer realm="metrics"'
