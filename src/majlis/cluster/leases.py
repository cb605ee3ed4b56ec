"""Which node runs each live space's media pipeline: a lease in Redis, renewed every second.

A node holds `owner:<space>` (its id, with an expiry) while it runs the space. If it dies the
key expires, and another node adopts the space. The scripts make "take it if free or already
mine" and "let go only if mine" atomic, so two nodes never both believe they own a space.
"""

from __future__ import annotations

from redis.asyncio import Redis

from majlis.cluster import keys

# The lease outlives two missed renewals: a loaded node is not robbed of its spaces, and a
# dead one is replaced within LEASE_S + a watch period or two.
LEASE_S = 3.0
RENEW_S = 1.0

CLAIM = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


async def claim(r: Redis, node_id: str, space_ids: list[str]) -> list[str]:
    """Take or renew the leases of these spaces; return the ones another node holds."""
    if not space_ids:
        return []
    ms = str(int(LEASE_S * 1000))
    async with r.pipeline(transaction=False) as p:
        for space_id in space_ids:
            p.eval(CLAIM, 1, keys.owner(space_id), node_id, ms)
        results = await p.execute()
    return [s for s, ok in zip(space_ids, results, strict=True) if not ok]


async def release(r: Redis, node_id: str, space_ids: list[str]) -> None:
    if not space_ids:
        return
    async with r.pipeline(transaction=False) as p:
        for space_id in space_ids:
            p.eval(RELEASE, 1, keys.owner(space_id), node_id)
        await p.execute()
