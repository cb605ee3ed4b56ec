from __future__ import annotations

import pytest

from majlis.errors import Unavailable
from majlis.guard.holds import HoldLimiter
from majlis.guard.ratelimit import TooManyRequests


def test_per_client_cap_is_a_429() -> None:
    holds = HoldLimiter(per_client=2, total=10)
    holds.acquire("a")
    holds.acquire("a")
    with pytest.raises(TooManyRequests, match="2 requests from this address"):
        holds.acquire("a")
    holds.acquire("b")
    assert (holds.held, holds.held_by("a"), holds.held_by("b")) == (3, 2, 1)


def test_total_cap_is_a_503() -> None:
    holds = HoldLimiter(per_client=5, total=3)
    for client in "abc":
        holds.acquire(client)
    with pytest.raises(Unavailable) as refused:
        holds.acquire("d")
    assert refused.value.status == 503 and refused.value.retry_after == 1


def test_release_frees_and_forgets() -> None:
    holds = HoldLimiter(per_client=1, total=1)
    with holds.hold("a"):
        assert holds.held == 1
    assert holds.held == 0 and holds.held_by("a") == 0
    with pytest.raises(ValueError):
        holds.release("a")


def test_a_refused_hold_counts_nothing() -> None:
    holds = HoldLimiter(per_client=1, total=5)
    holds.acquire("a")
    with pytest.raises(TooManyRequests), holds.hold("a"):
        pass
    assert holds.held == 1


def test_released_even_when_the_held_request_fails() -> None:
    holds = HoldLimiter(per_client=1, total=1)
    with pytest.raises(RuntimeError), holds.hold("a"):
        raise RuntimeError("timed out")
    assert holds.held == 0


def test_exempt_clients_meet_only_the_total() -> None:
    holds = HoldLimiter(per_client=1, total=3)
    for _ in range(3):
        holds.acquire("127.0.0.1", exempt=True)
    with pytest.raises(Unavailable):
        holds.acquire("127.0.0.1", exempt=True)


def test_per_network_cap_is_a_429_and_frees_on_release() -> None:
    holds = HoldLimiter(per_client=2, total=100, per_network=3)
    holds.acquire("10.0.0.1", network="10.0.0.0/24")
    holds.acquire("10.0.0.1", network="10.0.0.0/24")
    holds.acquire("10.0.0.2", network="10.0.0.0/24")
    with pytest.raises(TooManyRequests, match="3 requests from this network"):
        holds.acquire("10.0.0.3", network="10.0.0.0/24")
    holds.acquire("10.0.1.1", network="10.0.1.0/24")  # another network is not affected
    holds.release("10.0.0.2", network="10.0.0.0/24")
    with holds.hold("10.0.0.3", network="10.0.0.0/24"):
        assert holds.held == 4
    # Exempt clients (a trusted edge, the machine itself) are held to the total only.
    holds.acquire("10.0.0.4", exempt=True, network="10.0.0.0/24")
    holds.acquire("10.0.0.4", exempt=True, network="10.0.0.0/24")
    assert holds.held == 5
