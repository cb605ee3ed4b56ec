"""Which addresses and UDP ports the server offers in its ICE candidates.

aioice gathers on every interface except loopback and binds ephemeral ports; a media server
needs both under its operator's control (the public address behind a firewall, a port range
that is open; 127.0.0.1 for tests). aioice has no option for either, so this module replaces
its two gathering hooks, once, for the whole process. That is the process's only global
change, made at start-up from the settings.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from typing import Any

import aioice.ice
from aioice.candidate import Candidate, candidate_foundation, candidate_priority

log = logging.getLogger(__name__)

_original_host_addresses = aioice.ice.get_host_addresses
_original_component_candidates = aioice.ice.Connection.get_component_candidates


def configure_ice(addresses: tuple[str, ...], port_range: tuple[int, int] = (0, 0)) -> None:
    """Offer only ``addresses`` (empty: aioice's default) from ports in ``port_range``."""
    if addresses:
        fixed = list(addresses)

        def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

        aioice.ice.get_host_addresses = host_addresses
    else:
        aioice.ice.get_host_addresses = _original_host_addresses
    if port_range != (0, 0):
        low, high = port_range

        async def ranged(self: Any, component: int, addresses: list[str], **_: Any) -> Any:
            return await _ranged_host_candidates(self, component, addresses, low, high)

        aioice.ice.Connection.get_component_candidates = ranged  # type: ignore[method-assign,assignment]
    else:
        aioice.ice.Connection.get_component_candidates = _original_component_candidates  # type: ignore[method-assign]


async def _bind_in_range(address: str, low: int, high: int, factory: Any) -> Any:
    loop = asyncio.get_running_loop()
    ports = list(range(low, high + 1))
    start = random.randrange(len(ports))
    for port in ports[start:] + ports[:start]:
        try:
            return await loop.create_datagram_endpoint(factory, local_addr=(address, port))
        except OSError:
            continue
    raise OSError(f"no free UDP port in {low}-{high} on {address}")


async def _ranged_host_candidates(
    conn: Any, component: int, addresses: list[str], low: int, high: int
) -> list[Candidate]:
    # Host candidates only: with a fixed port range the server is reachable directly, so
    # there is no STUN or TURN server to ask (the server passes iceServers=[]).
    candidates: list[Candidate] = []
    for address in addresses:
        try:
            transport, protocol = await _bind_in_range(
                address, low, high, lambda: aioice.ice.StunProtocol(conn)
            )
        except OSError as exc:
            log.warning("ICE: %s", exc)
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        host, port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        conn._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    return candidates
