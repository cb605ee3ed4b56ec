from __future__ import annotations

import asyncio

from majlis.cluster import keys, leases
from majlis.cluster.link import RedisLink


async def test_one_owner_at_a_time_and_only_the_owner_lets_go(link: RedisLink) -> None:
    assert await link.call(lambda r: leases.claim(r, "n-a", ["s1", "s2"])) == []
    # B may not take what A holds; A renews freely.
    assert await link.call(lambda r: leases.claim(r, "n-b", ["s1", "s3"])) == ["s1"]
    assert await link.call(lambda r: leases.claim(r, "n-a", ["s1"])) == []
    await link.call(lambda r: leases.release(r, "n-b", ["s1"]))
    assert await link.call(lambda r: r.get(keys.owner("s1"))) == b"n-a"
    await link.call(lambda r: leases.release(r, "n-a", ["s1"]))
    assert await link.call(lambda r: leases.claim(r, "n-b", ["s1"])) == []


async def test_a_lease_not_renewed_expires(link: RedisLink) -> None:
    await link.call(lambda r: leases.claim(r, "n-a", ["s1"]))
    ttl = await link.call(lambda r: r.pttl(keys.owner("s1")))
    assert 0 < ttl <= leases.LEASE_S * 1000
    await link.call(lambda r: r.pexpire(keys.owner("s1"), 50))
    await asyncio.sleep(0.1)
    assert await link.call(lambda r: leases.claim(r, "n-b", ["s1"])) == []


async def test_a_takeover_starts_an_epoch_the_old_owner_cannot_renew_under(
    link: RedisLink,
) -> None:
    assert await link.call(lambda r: leases.claim_epochs(r, "n-a", ["s1"])) == {"s1": 0}
    assert await link.call(lambda r: leases.renew(r, "n-a", {"s1": 0})) == []
    # A is cut off from Redis; its lease runs out and B takes the space over.
    await link.call(lambda r: r.pexpire(keys.owner("s1"), 1))
    await asyncio.sleep(0.05)
    taken = await link.call(lambda r: leases.claim_epochs(r, "n-b", ["s1"], takeover=True))
    assert taken == {"s1": 1}
    assert await link.call(lambda r: leases.claim_epochs(r, "n-a", ["s1"])) == {}
    assert await link.call(lambda r: leases.renew(r, "n-a", {"s1": 0})) == ["s1"]
    # Even once B has let go, A's renewal under the old epoch is refused: A must stop.
    await link.call(lambda r: leases.release(r, "n-b", ["s1"]))
    assert await link.call(lambda r: leases.renew(r, "n-a", {"s1": 0})) == ["s1"]
    assert await link.call(lambda r: r.get(keys.owner("s1"))) is None
    # A node restarting on its own spaces (no takeover) keeps the epoch.
    assert await link.call(lambda r: leases.claim_epochs(r, "n-b", ["s1"])) == {"s1": 1}
