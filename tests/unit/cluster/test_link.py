from __future__ import annotations

import time

import pytest

from majlis.cluster.link import RedisLink, StoreDown
from tests.support.redis import RunningRedis


async def test_an_outage_fails_fast_and_is_reported_then_recovers(
    link: RedisLink, redis: RunningRedis
) -> None:
    assert await link.ping()
    assert link.up and link.up_for() >= 0
    redis.kill()
    started = time.monotonic()
    with pytest.raises(StoreDown) as raised:
        await link.call(lambda r: r.get("k"))
    assert time.monotonic() - started < 2.5, "one short timeout, no retries"
    assert raised.value.status == 503 and "Redis" in str(raised.value)
    assert not link.up and link.up_for() == 0.0
    redis.start()
    assert await link.ping()
    assert link.up
