from __future__ import annotations

import pytest

from majlis.cli import _limit_changes, parser
from majlis.config import Settings, parse_rate, parse_seconds
from majlis.guard.limits import Limits


def test_default_settings_build_limits() -> None:
    limits = Limits.from_settings(Settings())
    assert limits.trusted == ()
    assert [str(n) for n in limits.exempt] == ["127.0.0.0/8", "::1/128"]
    assert limits.listener_rate.address.rate == 100 and limits.listener_rate.address.burst == 400
    assert limits.holds.per_client == 64 and limits.holds.total == 6000
    assert limits.connections.listener_total == 8192
    assert limits.timeouts.head_s == 5 and limits.sizes.max_url_bytes == 4096


def test_parse_rate() -> None:
    assert parse_rate("100/400") == (100.0, 400.0)
    assert parse_rate("0.5/1") == (0.5, 1.0)
    for bad in ("100", "a/b", "0/5", "5/0", "nan/4", "inf/4", "1/inf"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_parse_seconds() -> None:
    assert parse_seconds("header timeout", "2.5", 0.1, 60) == 2.5
    with pytest.raises(ValueError, match=r"header timeout must be 0\.1-60 s"):
        parse_seconds("header timeout", "0", 0.1, 60)
    with pytest.raises(ValueError, match="must be a number of seconds"):
        parse_seconds("header timeout", "soon", 0.1, 60)


def test_serve_flags_set_the_limits() -> None:
    args = parser().parse_args(
        ["serve", "--trusted-proxy", "10.0.0.0/8, 192.0.2.1", "--listener-rate", "5/10",
         "--max-held", "7", "--header-timeout", "1.5", "--min-body-rate", "0",
         "--limit-exempt", "none"]
    )  # fmt: skip
    assert _limit_changes(args) == {
        "trusted_proxies": ("10.0.0.0/8", "192.0.2.1"),
        "limit_exempt": (),
        "listener_rate": (5.0, 10.0),
        "max_held": 7,
        "header_timeout": 1.5,
        "min_body_rate": 0.0,
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["--trusted-proxy", "10.0.0.0/33"],
        ["--api-rate", "fast"],
        ["--max-connections", "0"],
        ["--idle-timeout", "-1"],
    ],
)
def test_bad_limit_flags_are_refused(argv: list[str]) -> None:
    with pytest.raises(ValueError):
        _limit_changes(parser().parse_args(["serve", *argv]))
