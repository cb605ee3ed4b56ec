from __future__ import annotations

import pytest

from majlis.guard.timeouts import RequestTimeout, Timeouts, body_too_slow

T = Timeouts(head_s=5, idle_s=30, min_body_rate=1000, body_grace_s=2)


def test_nothing_is_too_slow_during_the_grace() -> None:
    assert not body_too_slow(0, 1.99, T)
    assert not body_too_slow(0, 2.0, T)


def test_after_the_grace_the_average_must_keep_up() -> None:
    assert body_too_slow(0, 2.1, T)
    assert not body_too_slow(1000, 3.0, T)
    assert body_too_slow(999, 3.0, T)
    # A trickle of 10 bytes a second is cut however long it has gone on.
    assert all(body_too_slow(10 * s, s, T) for s in (3, 10, 100, 1000))


def test_a_zero_rate_turns_the_check_off() -> None:
    assert not body_too_slow(0, 1e6, Timeouts(min_body_rate=0))


@pytest.mark.parametrize("kwargs", [{"head_s": 0}, {"idle_s": -1}, {"min_body_rate": -5}])
def test_timeouts_must_be_positive(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Timeouts(**kwargs)


def test_request_timeout_is_a_408() -> None:
    assert (RequestTimeout("x").status, RequestTimeout("x").code) == (408, "request_timeout")
