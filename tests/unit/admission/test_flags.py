"""The admission flags of `majlis serve`: parsed into Settings, refused out of range."""

from __future__ import annotations

import pytest

from majlis.cli import _admission, parser
from majlis.config import Settings


def _changes(*argv: str) -> dict[str, object]:
    return _admission(parser().parse_args(["serve", *argv]))


def test_defaults_change_nothing() -> None:
    assert _changes() == {}
    settings = Settings()
    assert (settings.max_listeners, settings.attack_mode, settings.pow_difficulty) == (
        20_000,
        False,
        16,
    )


def test_every_flag() -> None:
    argv = ("--max-listeners", "0", "--attack-mode", "--pow-difficulty", "20",
            "--attack-threshold", "50", "--attack-quiet", "30")  # fmt: skip
    assert _changes(*argv) == {
        "max_listeners": 0,
        "attack_mode": True,
        "pow_difficulty": 20,
        "attack_threshold": 50.0,
        "attack_quiet_s": 30.0,
    }


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-listeners", "-1", "max listeners must be 0-"),
        ("--pow-difficulty", "33", "PoW difficulty must be 1-32"),
        ("--pow-difficulty", "x", "PoW difficulty must be an integer"),
        ("--attack-quiet", "0", "attack quiet must be 1-86400"),
    ],
)
def test_out_of_range_is_refused(flag: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _changes(flag, value)
