"""Connection slots: a listener pool capped per address and in total, and a reserve that
only the speaker path (WHIP, the API) and operations endpoints may use.

A connection takes a slot when accepted, before its first request says what it is for: a
pool slot while the pool has room, else a reserve slot. A reserve slot that asks for a
listener URL is answered 503 and closed, so listener traffic, however much of it, can
never take the capacity a speaker needs to publish.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Pool(enum.Enum):
    LISTENER = "listener"
    RESERVE = "reserve"


@dataclass(frozen=True, slots=True)
class Slot:
    pool: Pool
    address: str
    counted_per_address: bool


@dataclass(slots=True)
class _Counts:
    total: int = 0
    per_address: dict[str, int] | None = None

    def of(self, address: str) -> int:
        return (self.per_address or {}).get(address, 0)

    def add(self, address: str, per_address: bool, delta: int) -> None:
        self.total += delta
        if not per_address:
            return
        if self.per_address is None:
            self.per_address = {}
        value = self.per_address.get(address, 0) + delta
        if value:
            self.per_address[address] = value
        else:
            self.per_address.pop(address, None)


class ConnectionLimiter:
    def __init__(self, listener_total: int, per_address: int, reserve: int) -> None:
        if listener_total < 1 or per_address < 1 or reserve < 0:
            raise ValueError("connection limits must be positive (the reserve may be 0)")
        self.listener_total = listener_total
        self.per_address = per_address
        self.reserve = reserve
        # A speaker needs a connection or two; more from one address is not a speaker.
        self.reserve_per_address = max(1, min(reserve, 8))
        self._listener = _Counts()
        self._reserve = _Counts()

    @property
    def listeners(self) -> int:
        return self._listener.total

    @property
    def reserved(self) -> int:
        return self._reserve.total

    def listener_full(self) -> bool:
        return self._listener.total >= self.listener_total

    def admit(self, address: str, exempt: bool = False) -> Slot | None:
        """A slot for a new connection from `address`, or None (refuse it).

        `exempt` addresses (trusted proxies, which carry many clients) skip the per-address
        caps and count only in the totals.
        """
        pool = self._listener
        if pool.total < self.listener_total and (exempt or pool.of(address) < self.per_address):
            return self._take(Pool.LISTENER, address, exempt)
        res = self._reserve
        if res.total < self.reserve and (exempt or res.of(address) < self.reserve_per_address):
            return self._take(Pool.RESERVE, address, exempt)
        return None

    def release(self, slot: Slot) -> None:
        counts = self._listener if slot.pool is Pool.LISTENER else self._reserve
        counts.add(slot.address, slot.counted_per_address, -1)

    def _take(self, pool: Pool, address: str, exempt: bool) -> Slot:
        counts = self._listener if pool is Pool.LISTENER else self._reserve
        counts.add(address, not exempt, 1)
        return Slot(pool, address, not exempt)
