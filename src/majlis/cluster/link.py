"""The node's connection to Redis, and whether Redis is reachable right now.

Every call goes through `call`, which fails fast (one short timeout, no retries): a node
that cannot reach Redis keeps its live spaces playing and reports itself not ready for new
work, rather than stalling requests on a dead store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from majlis.clock import Clock
from majlis.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# A loopback or LAN Redis answers in well under a millisecond; a second is an outage.
CALL_TIMEOUT_S = 1.0
# Large replies (a whole recording when a node adopts a space) get longer.
BULK_TIMEOUT_S = 10.0


def as_bytes(value: object) -> bytes | None:
    """redis-py types its replies loosely; this node never asks it to decode them."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else None


class StoreDown(Unavailable):
    """Redis could not be reached: new work is refused, live spaces go on."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the cluster's shared store (Redis) is unreachable: {detail}", 5)


class RedisLink:
    def __init__(self, url: str, clock: Clock) -> None:
        self.url = url
        self.clock = clock
        self.redis: Redis = Redis.from_url(
            url,
            socket_timeout=CALL_TIMEOUT_S,
            socket_connect_timeout=CALL_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.up = False
        # Monotonic time of the last change between up and down: a node that has just got
        # Redis back gives the owners of live spaces time to renew before adopting any.
        self.changed_at = clock.monotonic()
        self.last_error = "not connected yet"

    def _mark(self, up: bool, error: str = "") -> None:
        if up != self.up:
            self.changed_at = self.clock.monotonic()
            if up:
                log.warning("redis reachable again")
            else:
                log.warning("redis unreachable: %s", error)
        self.up = up
        if error:
            self.last_error = error

    def up_for(self) -> float:
        """Seconds Redis has been reachable without a break (0 while down)."""
        return self.clock.monotonic() - self.changed_at if self.up else 0.0

    async def call(self, fn: Callable[[Redis], Awaitable[T]], limit: float = CALL_TIMEOUT_S) -> T:
        try:
            result = await asyncio.wait_for(fn(self.redis), limit)
        except (RedisError, OSError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            self._mark(False, detail)
            raise StoreDown(detail) from None
        self._mark(True)
        return result

    async def ping(self) -> bool:
        try:
            await self.call(lambda r: r.ping())
        except StoreDown:
            return False
        return True

    async def close(self) -> None:
        await self.redis.aclose()
