"""Who a request comes from: its address (or the forwarded one behind a trusted proxy), and
the keys its limits are counted under."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# One subscriber commonly holds a whole IPv6 /64; a site or a small ISP customer an IPv4 /24
# or an IPv6 /48 (RFC 6177): the prefix limits bound what one network can ask in total.
IPV6_HOST_BITS = 64
IPV4_PREFIX_BITS = 24
IPV6_PREFIX_BITS = 48
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Client:
    address: str  # the key per client: an IPv4 address or an IPv6 /64
    prefix: str  # the key per network: IPv4 /24 or IPv6 /48
    exempt: bool = False  # skips the per-address and per-prefix limits (not the totals)


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """CIDR blocks (or single addresses) of trusted proxies; raise ValueError on a bad one."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR block: {entry!r}") from None
    return tuple(networks)


def parse_address(text: str | None) -> Address | None:
    try:
        ip = ipaddress.ip_address((text or "").strip().split("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_trusted(ip: Address | None, trusted: tuple[Network, ...]) -> bool:
    return ip is not None and any(ip in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> Address | None:
    """The address a request is counted under.

    X-Forwarded-For is read only when the peer is a trusted proxy, and then from the right:
    each trusted proxy appends the address it received from, so the first untrusted address
    from the right is the one no client could have forged.
    """
    ip = parse_address(peer)
    if not is_trusted(ip, trusted) or not forwarded_for:
        return ip
    for hop in reversed(forwarded_for.split(",")):
        hop_ip = parse_address(hop)
        if hop_ip is None:
            return ip  # a malformed hop: trust nothing left of it
        if not is_trusted(hop_ip, trusted):
            return hop_ip
        ip = hop_ip
    return ip


def client_keys(ip: Address | None, exempt: tuple[Network, ...] = ()) -> Client:
    if ip is None:
        return Client(UNKNOWN, UNKNOWN)
    return _keys(ip, exempt)


# Building networks costs tens of microseconds, more than the rate check itself; the same
# few thousand addresses ask again and again.
@functools.lru_cache(maxsize=16_384)
def _keys(ip: Address, exempt: tuple[Network, ...]) -> Client:
    free = is_trusted(ip, exempt)
    if isinstance(ip, ipaddress.IPv6Address):
        host = ipaddress.ip_network(f"{ip}/{IPV6_HOST_BITS}", strict=False)
        prefix = ipaddress.ip_network(f"{ip}/{IPV6_PREFIX_BITS}", strict=False)
        return Client(str(host), str(prefix), free)
    net = ipaddress.ip_network(f"{ip}/{IPV4_PREFIX_BITS}", strict=False)
    return Client(str(ip), str(net), free)
