"""Which node runs each live space's media pipeline: a lease in Redis, renewed every second.

A node holds `owner:<space>` (its id, with an expiry) while it runs the space. If it dies the
key expires, and another node adopts the space. The scripts make "take it if free or already
mine" and "let go only if mine" atomic, so two nodes never both believe they own a space.

A lease alone cannot stop a node that lost Redis while the others still reach it: its lease
expires, another node adopts the space, and the first one still has segments queued for
when Redis answers again. So every takeover starts a new epoch (`epoch:<space>`); a node
renews and writes a space only under the epoch it claimed it with (a fencing token).
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

# Claim, and say under which epoch: a takeover (adopt) starts a new one, so whatever the
# previous owner still has queued can no longer be written (replica.py checks it).
CLAIM_EPOCH = """
local held = redis.call('GET', KEYS[1])
if held ~= false and held ~= ARGV[1] then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] == '1' then
  return redis.call('INCR', KEYS[2])
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
"""

# Renew only under the epoch the lease was claimed with: once another node took the space
# over, even if it has let go since, the old owner must not take it back.
RENEW = """
local held = redis.call('GET', KEYS[1])
if held ~= false and held ~= ARGV[1] then
  return 0
end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
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


async def claim_epochs(
    r: Redis, node_id: str, space_ids: list[str], *, takeover: bool = False
) -> dict[str, int]:
    """Take or renew these leases and return the epoch of each one taken (a takeover starts
    a new epoch); the spaces another node holds are left out."""
    if not space_ids:
        return {}
    ms = str(int(LEASE_S * 1000))
    flag = "1" if takeover else "0"
    async with r.pipeline(transaction=False) as p:
        for space_id in space_ids:
            p.eval(CLAIM_EPOCH, 2, keys.owner(space_id), keys.epoch(space_id), node_id, ms, flag)
        results = await p.execute()
    return {s: int(e) for s, e in zip(space_ids, results, strict=True) if int(e) >= 0}


async def renew(r: Redis, node_id: str, epochs: dict[str, int]) -> list[str]:
    """Renew these leases, each under its epoch; return the ones this node lost."""
    if not epochs:
        return []
    ms = str(int(LEASE_S * 1000))
    ids = sorted(epochs)
    async with r.pipeline(transaction=False) as p:
        for space_id in ids:
            p.eval(
                RENEW, 2, keys.owner(space_id), keys.epoch(space_id), node_id, ms,
                str(epochs[space_id]),
            )  # fmt: skip
        results = await p.execute()
    return [s for s, ok in zip(ids, results, strict=True) if not ok]
