"""Sums each node's per-address request counts in Redis (see majlis.guard.shared)."""

from __future__ import annotations

from functools import partial
from typing import Any

from redis.asyncio import Redis

from majlis.cluster import keys
from majlis.cluster.link import RedisLink
from majlis.guard.shared import SharedBudget


async def _push(r: Redis, key: str, counts: list[tuple[str, int]], ttl: int) -> Any:
    async with r.pipeline(transaction=False) as p:
        for address, n in counts:
            p.hincrby(key, address, n)
        p.expire(key, ttl)
        return await p.execute()


async def sync(link: RedisLink, budgets: dict[str, SharedBudget], wall: float) -> None:
    for lane, budget in budgets.items():
        window, counts = budget.drain(wall)
        if not counts:
            continue
        results = await link.call(
            partial(_push, key=keys.rate(lane, window), counts=counts, ttl=3 * budget.window_s)
        )
        budget.apply(window, [(a, int(t)) for (a, _), t in zip(counts, results, strict=False)])
