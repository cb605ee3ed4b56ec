"""Token buckets per key, and the pair of them (client address, network prefix) a request uses."""

from __future__ import annotations

import math
from dataclasses import dataclass

from majlis.errors import Unavailable

# Keys tracked per bucket table; beyond it the full buckets, then the oldest, are forgotten.
MAX_TRACKED_KEYS = 50_000


class TooManyRequests(Unavailable):
    status = 429
    code = "too_many_requests"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(frozen=True, slots=True)
class Rate:
    """A steady `per_s` with room for a `burst`."""

    per_s: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.per_s > 0 and self.burst >= 1):
            raise ValueError(f"a rate needs per_s > 0 and burst >= 1, got {self}")


class TokenBuckets:
    """One token bucket per key, in bounded memory.

    A key starts full (`burst` tokens) and refills at `rate` tokens a second. When more than
    `max_keys` keys are tracked, full buckets are forgotten first (they hold no information),
    then the least recently used half.
    """

    def __init__(self, burst: float, rate: float, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.burst = burst
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: str, now: float, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are there (0: now); refills, takes nothing."""
        bucket = self._refill(key, now)
        return max(0.0, (cost - bucket.tokens) / self.rate)

    def take(self, key: str, now: float, cost: float = 1.0) -> None:
        self._refill(key, now).tokens -= cost

    def allow(self, key: str, now: float) -> bool:
        if self.wait(key, now) > 0:
            return False
        self.take(key, now)
        return True

    def retry_after(self, key: str) -> int:
        """Whole seconds until the next token (for a Retry-After header; at least 1)."""
        bucket = self._buckets.get(key)
        missing = 1 - bucket.tokens if bucket else 0
        return max(1, math.ceil(missing / self.rate))

    def _refill(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget(now)
            bucket = _Bucket(self.burst, now)
        # Re-inserted on every use: the dict's order is least recently used first.
        self._buckets[key] = bucket
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = now
        return bucket

    def _forget(self, now: float) -> None:
        full = [
            k for k, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst
        ]
        for key in full or list(self._buckets)[: max(1, len(self._buckets) // 2)]:
            del self._buckets[key]


class RateLimiter:
    """A request costs one token from its address's bucket and one from its prefix's.

    Both must have a token, or neither is taken: a refused request costs nothing, so a client
    that backs off as told is served again after Retry-After.
    """

    def __init__(self, address: Rate, prefix: Rate, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.address = TokenBuckets(address.burst, address.per_s, max_keys)
        self.prefix = TokenBuckets(prefix.burst, prefix.per_s, max_keys)

    def check(self, address_key: str, prefix_key: str, now: float) -> int:
        """0 when allowed (a token taken from each bucket), else whole seconds to wait."""
        wait = max(self.address.wait(address_key, now), self.prefix.wait(prefix_key, now))
        if wait > 0:
            return max(1, math.ceil(wait))
        self.address.take(address_key, now)
        self.prefix.take(prefix_key, now)
        return 0
