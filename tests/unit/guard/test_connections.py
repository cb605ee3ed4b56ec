from __future__ import annotations

import pytest

from majlis.guard.connections import ConnectionLimiter, Pool


def test_listener_pool_first_then_the_reserve_then_refusal() -> None:
    limiter = ConnectionLimiter(listener_total=2, per_address=10, reserve=1)
    a = limiter.admit("1.1.1.1")
    b = limiter.admit("1.1.1.2")
    assert a is not None and b is not None and a.pool is b.pool is Pool.LISTENER
    assert limiter.listener_full()
    r = limiter.admit("1.1.1.3")
    assert r is not None and r.pool is Pool.RESERVE
    assert limiter.admit("1.1.1.4") is None
    limiter.release(a)
    assert not limiter.listener_full()
    c = limiter.admit("1.1.1.4")
    assert c is not None and c.pool is Pool.LISTENER


def test_one_address_cannot_take_the_pool() -> None:
    limiter = ConnectionLimiter(listener_total=100, per_address=3, reserve=20)
    slots = [limiter.admit("9.9.9.9") for _ in range(3)]
    assert all(s is not None and s.pool is Pool.LISTENER for s in slots)
    # Past its share it may still reach the reserve (a speaker on the same address), but
    # only a few reserve slots per address.
    more = [limiter.admit("9.9.9.9") for _ in range(limiter.reserve_per_address)]
    assert all(s is not None and s.pool is Pool.RESERVE for s in more)
    assert limiter.admit("9.9.9.9") is None
    other = limiter.admit("8.8.8.8")
    assert other is not None and other.pool is Pool.LISTENER


def test_trusted_proxies_count_only_in_the_totals() -> None:
    limiter = ConnectionLimiter(listener_total=5, per_address=1, reserve=0)
    slots = [limiter.admit("10.0.0.1", exempt=True) for _ in range(5)]
    assert all(s is not None for s in slots)
    assert limiter.admit("10.0.0.1", exempt=True) is None
    for slot in slots:
        assert slot is not None
        limiter.release(slot)
    assert limiter.listeners == 0


def test_release_returns_every_count() -> None:
    limiter = ConnectionLimiter(listener_total=1, per_address=1, reserve=1)
    slots = [limiter.admit("a"), limiter.admit("a")]
    for slot in slots:
        assert slot is not None
        limiter.release(slot)
    assert (limiter.listeners, limiter.reserved) == (0, 0)
    assert limiter.admit("a") is not None


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ConnectionLimiter(listener_total=0, per_address=1, reserve=0)
