"""Who the client is, and which forwarding headers to believe (the trust model).

Forwarded headers (``Forwarded``, ``X-Forwarded-*``, the single-address headers of CDNs) are
believed only from trusted peers (``trusted_proxies``); the recorded client address is the
first untrusted hop of the chain the trusted proxies appended. Pure functions; they run on the
worker when it builds the wire event, and on the request thread only when governance or
sampling needs the address before the app.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrustedProxies:
    """Which peers may tell us the client's address (loopback and private ranges by default:
    the usual reverse proxy in front of an app server)."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._cache: dict[str, bool] = {}

    def __contains__(self, address: str) -> bool:
        known = self._cache.get(address)
        if known is not None:
            return known
        ip = parse_ip(address)
        trusted = ip is not None and any(ip in net for net in self.networks)
        if len(self._cache) < 4096:
            self._cache[address] = trusted
        return trusted


def parse_ip(value: str) -> IPAddress | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # [v6]:port
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _forwarded_pairs(header: str) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict of lower-cased parameters per hop, in order."""
    hops = []
    for element in header.split(","):
        params = {}
        for pair in element.split(";"):
            key, sep, value = pair.partition("=")
            if sep:
                params[key.strip().lower()] = value.strip().strip('"')
        hops.append(params)
    return hops


_SINGLE_IP_HEADERS = (
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
)


_FORWARDING = frozenset(("forwarded", "x-forwarded-for", *_SINGLE_IP_HEADERS))


def client_ip(peer: str | None, lower: Mapping[str, str], trusted: TrustedProxies) -> str | None:
    """The client's address: the peer itself unless the peer is a trusted proxy, in which case
    the forwarding headers (``lower``: names in lower case) are read right to left, skipping
    further trusted hops."""
    if not peer or lower.keys().isdisjoint(_FORWARDING) or peer not in trusted:
        return peer
    chain: list[str] = []
    forwarded = lower.get("forwarded")
    if forwarded:
        chain = [hop["for"] for hop in _forwarded_pairs(forwarded) if "for" in hop]
    elif lower.get("x-forwarded-for"):
        chain = [part.strip() for part in lower["x-forwarded-for"].split(",")]
    for candidate in reversed(chain):
        ip = parse_ip(candidate)
        if ip is None:
            continue
        if str(ip) not in trusted:
            return str(ip)
    if chain:
        first = parse_ip(chain[0])
        if first is not None:
            return str(first)
    for name in _SINGLE_IP_HEADERS:
        value = lower.get(name)
        if value:
            ip = parse_ip(value)
            if ip is not None:
                return str(ip)
    return peer


_ORIGIN_HEADERS = frozenset(("forwarded", "x-forwarded-proto", "x-forwarded-host"))


def forwarded_origin(
    peer: str | None, lower: Mapping[str, str], trusted: TrustedProxies
) -> tuple[str | None, str | None]:
    """(scheme, host) as told by a trusted proxy (``Forwarded`` proto/host, else X-Forwarded-*)."""
    if not peer or lower.keys().isdisjoint(_ORIGIN_HEADERS) or peer not in trusted:
        return None, None
    forwarded = lower.get("forwarded")
    if forwarded:
        first = _forwarded_pairs(forwarded)[0]
        return first.get("proto"), first.get("host")
    proto = lower.get("x-forwarded-proto")
    host = lower.get("x-forwarded-host")
    return (
        proto.split(",")[0].strip() if proto else None,
        host.split(",")[0].strip() if host else None,
    )
