from __future__ import annotations

import pytest

from majlis.guard.ratelimit import Rate, RateLimiter, TokenBuckets, TooManyRequests


def test_a_burst_then_the_steady_rate() -> None:
    buckets = TokenBuckets(burst=3, rate=0.5)
    assert [buckets.allow("k", 0.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.retry_after("k") == 2
    assert buckets.allow("other", 0.0), "keys are independent"
    assert not buckets.allow("k", 1.0)
    assert buckets.allow("k", 2.0)


def test_refill_never_exceeds_the_burst() -> None:
    buckets = TokenBuckets(burst=2, rate=10)
    assert buckets.allow("k", 0.0)
    assert [buckets.allow("k", 1000.0) for _ in range(3)] == [True, True, False]


def test_a_clock_going_backwards_adds_nothing() -> None:
    buckets = TokenBuckets(burst=1, rate=1)
    assert buckets.allow("k", 10.0)
    assert not buckets.allow("k", 5.0)


def test_memory_is_bounded_full_buckets_forgotten_first() -> None:
    buckets = TokenBuckets(burst=2, rate=1, max_keys=4)
    buckets.take("busy", 0.0, 2)  # empty: must survive eviction
    for key in ("a", "b", "c"):
        buckets.wait(key, 0.0)  # tracked, still full
    buckets.wait("new", 0.0)
    assert len(buckets) == 2
    assert buckets.wait("busy", 0.0) > 0, "the empty bucket was forgotten"


def test_without_full_buckets_the_least_recently_used_half_goes() -> None:
    buckets = TokenBuckets(burst=1, rate=0.001, max_keys=4)
    for key in ("a", "b", "c", "d"):
        buckets.take(key, 0.0)
    buckets.take("a", 0.0, 0)  # "a" used again: now the most recent
    buckets.wait("e", 0.0)
    assert len(buckets) == 3
    assert buckets.wait("a", 0.0) > 0 and buckets.wait("d", 0.0) > 0
    assert buckets.wait("b", 0.0) == 0, "b was among the least recently used: forgotten"


def test_the_pair_needs_both_and_takes_from_neither_on_refusal() -> None:
    limiter = RateLimiter(Rate(per_s=1, burst=2), Rate(per_s=1, burst=3))
    assert limiter.check("10.0.0.1", "10.0.0.0/24", 0.0) == 0
    assert limiter.check("10.0.0.1", "10.0.0.0/24", 0.0) == 0
    assert limiter.check("10.0.0.1", "10.0.0.0/24", 0.0) == 1, "the address is empty"
    # The refusal took nothing from the prefix: a neighbour still has its one token.
    assert limiter.check("10.0.0.2", "10.0.0.0/24", 0.0) == 0
    assert limiter.check("10.0.0.3", "10.0.0.0/24", 0.0) == 1, "the prefix is empty"
    assert limiter.check("10.0.0.3", "10.0.0.0/24", 1.0) == 0


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    limiter = RateLimiter(Rate(per_s=0.4, burst=1), Rate(per_s=100, burst=100))
    assert limiter.check("a", "p", 0.0) == 0
    assert limiter.check("a", "p", 0.0) == 3  # 1 token at 0.4/s = 2.5 s -> 3


def test_too_many_requests_is_a_429() -> None:
    exc = TooManyRequests("slow down", 4)
    assert (exc.status, exc.code, exc.retry_after) == (429, "too_many_requests", 4)


@pytest.mark.parametrize(("per_s", "burst"), [(0, 1), (-1, 5), (1, 0.5)])
def test_rates_must_make_sense(per_s: float, burst: float) -> None:
    with pytest.raises(ValueError):
        Rate(per_s, burst)


def test_default_listener_rate_carries_a_player_and_its_join() -> None:
    """A player joining: playlist, init, ~15 parts of catch-up; then ~9.4 requests a second
    (a blocking reload and a part every 213 ms) with 1 s state polls: never refused."""
    from majlis.config import Settings

    s = Settings()
    limiter = RateLimiter(Rate(*s.listener_rate), Rate(*s.listener_prefix_rate))
    now = 0.0
    for _ in range(17):
        assert limiter.check("198.51.100.7", "198.51.100.0/24", now) == 0
    for tick in range(10 * 60 * 5):  # ten players behind one address, five minutes
        now = tick * 0.2134 / 10
        assert limiter.check("198.51.100.7", "198.51.100.0/24", now) == 0
