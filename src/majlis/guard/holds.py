"""Caps on held requests: LL-HLS blocking playlist reloads and preload-hinted parts.

A held request costs a connection, a coroutine and a wake-up per part; thousands from one
client would otherwise be free to ask for. Past a cap the request is refused at once,
without being held.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from majlis.errors import Unavailable
from majlis.guard.ratelimit import TooManyRequests


class HoldLimiter:
    def __init__(
        self, per_client: int, total: int, retry_after: int = 1, per_network: int | None = None
    ) -> None:
        if per_client < 1 or total < 1 or (per_network is not None and per_network < 1):
            raise ValueError("hold limits must be at least 1")
        self.per_client = per_client
        # Per IPv4 /24 or IPv6 /48: a flood from a few networks (measured: 16 addresses in
        # four /24s holding 1,000 reloads) wakes a herd at every part that delays the
        # answers to every real listener; the network cap bounds that herd.
        self.per_network = per_network
        self.total = total
        self.retry_after = retry_after
        self._held: dict[str, int] = {}
        self._networks: dict[str, int] = {}
        self._count = 0

    @property
    def held(self) -> int:
        return self._count

    def held_by(self, client: str) -> int:
        return self._held.get(client, 0)

    def acquire(self, client: str, exempt: bool = False, network: str | None = None) -> None:
        """Count one more held request, or raise (429 per client or network, 503 in total).

        An `exempt` client (see `--limit-exempt`) is held to the total only."""
        mine = self._held.get(client, 0)
        if mine >= self.per_client and not exempt:
            raise TooManyRequests(
                f"{mine} requests from this address are already held (the limit is "
                f"{self.per_client}): wait for them before asking for more",
                self.retry_after,
            )
        ours = self._networks.get(network, 0) if network is not None else 0
        if self.per_network is not None and ours >= self.per_network and not exempt:
            raise TooManyRequests(
                f"{ours} requests from this network are already held (the limit is "
                f"{self.per_network}): retry shortly",
                self.retry_after,
            )
        if self._count >= self.total:
            raise Unavailable(
                f"the server already holds {self._count} requests: retry shortly",
                self.retry_after,
            )
        self._held[client] = mine + 1
        if network is not None:
            self._networks[network] = ours + 1
        self._count += 1

    def release(self, client: str, network: str | None = None) -> None:
        mine = self._held.get(client, 0)
        if mine <= 0:
            raise ValueError(f"no held request of {client!r} to release")
        if mine == 1:
            del self._held[client]
        else:
            self._held[client] = mine - 1
        if network is not None:
            ours = self._networks[network]
            if ours == 1:
                del self._networks[network]
            else:
                self._networks[network] = ours - 1
        self._count -= 1

    @contextmanager
    def hold(self, client: str, exempt: bool = False, network: str | None = None) -> Iterator[None]:
        self.acquire(client, exempt, network)
        try:
            yield
        finally:
            self.release(client, network)
