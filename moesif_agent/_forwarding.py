"""Who the client is, and which forwarding headers to believe (the trust model).

A forwarding header is believed only from a trusted peer (``trusted_proxies``: loopback and
private ranges by default; a unix-socket peer, which has no address, is a local proxy and
trusted), and only the one header the proxy is said to write (``client_ip_header``:
``x-forwarded-for`` by default, with ``X-Forwarded-Proto``/``-Host``; ``forwarded`` for RFC
7239; or a single-address header such as ``x-real-ip``). A client can add headers but cannot
choose what a proxy appends after them, so the recorded address is the first untrusted hop
counted from the right of the chain; any other forwarding header is ignored. Pure functions:
they run on the worker when it builds the wire event, and on the request thread only when
governance or sampling needs the address before the app.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FORWARDED = "forwarded"
X_FORWARDED_FOR = "x-forwarded-for"


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
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:127.0.0.1, as dual-stack servers report IPv4 peers
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


class Forwarding:
    """One agent's trust model: the trusted proxies and the header they write."""

    def __init__(self, trusted: Iterable[str], header: str = X_FORWARDED_FOR) -> None:
        self.trusted = TrustedProxies(trusted)
        self.header = header.lower()
        self.origin_names = (
            frozenset((FORWARDED,))
            if self.header == FORWARDED
            else frozenset(("x-forwarded-proto", "x-forwarded-host"))
        )

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` may tell us about the client (an empty peer is a unix socket)."""
        return not peer or peer in self.trusted

    def client_ip(self, peer: str | None, lower: Mapping[str, str]) -> str | None:
        """The client's address: the peer itself unless it is a trusted proxy, in which case
        the first untrusted hop, from the right, of the chain in the proxy's header
        (``lower``: the request's headers with lower-case names)."""
        value = lower.get(self.header)
        if not value or not self.trusts(peer):
            return peer or None
        if self.header == FORWARDED:
            chain = [hop.get("for", "") for hop in _forwarded_pairs(value)]
        elif self.header == X_FORWARDED_FOR:
            chain = value.split(",")
        else:  # a single-address header, set (not appended) by the proxy
            ip = parse_ip(value.split(",")[-1])
            return str(ip) if ip is not None else peer or None
        hop = self._first_untrusted(chain)
        return str(chain_ip(chain, hop)) if hop is not None else peer or None

    def _first_untrusted(self, chain: list[str]) -> int | None:
        """The index of the first hop from the right that is not a trusted proxy (the
        leftmost valid hop when all are), or None when no hop is an address."""
        last_valid = None
        for index in range(len(chain) - 1, -1, -1):
            ip = parse_ip(chain[index])
            if ip is None:
                if chain[index].strip().lower() == "unknown":
                    continue
                return last_valid  # garbage the proxy did not write: stop believing here
            if str(ip) not in self.trusted:
                return index
            last_valid = index
        return last_valid

    def origin(self, peer: str | None, lower: Mapping[str, str]) -> tuple[str | None, str | None]:
        """(scheme, host) as a trusted proxy tells them, else (None, None)."""
        if lower.keys().isdisjoint(self.origin_names) or not self.trusts(peer):
            return None, None
        if self.header == FORWARDED:
            hops = _forwarded_pairs(lower[FORWARDED])
            index = self._first_untrusted([hop.get("for", "") for hop in hops])
            hop = hops[index if index is not None else -1]
            return hop.get("proto") or None, hop.get("host") or None
        # Proxies set these (or append to them): the rightmost value is the proxy's own.
        proto = lower.get("x-forwarded-proto")
        host = lower.get("x-forwarded-host")
        return (
            proto.split(",")[-1].strip() or None if proto else None,
            host.split(",")[-1].strip() or None if host else None,
        )


def chain_ip(chain: list[str], index: int) -> IPAddress | None:
    return parse_ip(chain[index])
