from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from majlis.clock import SystemClock
from majlis.cluster.link import RedisLink
from tests.support.redis import RunningRedis, redis_server


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RunningRedis]:
    with redis_server(tmp_path / "redis") as running:
        yield running


@pytest.fixture
async def link(redis: RunningRedis) -> AsyncIterator[RedisLink]:
    made = RedisLink(redis.url, SystemClock())
    yield made
    await made.close()
