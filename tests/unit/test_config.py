"""Settings: the parsers behind command-line flags and MAJLIS_* variables, and their errors."""

from __future__ import annotations

import pytest

from majlis.config import (
    Settings,
    parse_addresses,
    parse_bitrate,
    parse_bounded,
    parse_port_range,
)

ENV = (
    "MAJLIS_ADMIN_TOKEN",
    "MAJLIS_ICE_ADDRESSES",
    "MAJLIS_ICE_PORTS",
    "MAJLIS_AAC_BITRATE",
    "MAJLIS_PART_FRAMES",
    "MAJLIS_SEGMENT_PARTS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_give_213_ms_parts_and_1067_ms_segments() -> None:
    settings = Settings()
    assert settings.part_duration == pytest.approx(0.213333, abs=1e-6)
    assert settings.segment_duration == pytest.approx(1.066667, abs=1e-6)


def test_parse_port_range() -> None:
    assert parse_port_range("40000-40100") == (40000, 40100)
    assert parse_port_range("1024-1024") == (1024, 1024)
    assert parse_port_range("65535-65535") == (65535, 65535)


@pytest.mark.parametrize("text", ["", "abc", "40000", "40000-", "-40000", "a-b", "1-2-3"])
def test_parse_port_range_shape_errors(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_port_range(text)
    assert str(exc.value) == f"port range must look like 40000-40100, got {text!r}"


@pytest.mark.parametrize("text", ["100-200", "1023-2000", "50000-40000", "40000-65536"])
def test_parse_port_range_bound_errors(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_port_range(text)
    assert str(exc.value) == f"port range {text!r} must lie within 1024-65535, low <= high"


def test_parse_bitrate() -> None:
    assert parse_bitrate("32000") == 32_000
    assert parse_bitrate("64000") == 64_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("48k", "AAC bitrate must be an integer, got '48k'"),
        ("", "AAC bitrate must be an integer, got ''"),
        ("4.8e4", "AAC bitrate must be an integer, got '4.8e4'"),
        ("31999", "AAC bitrate must be 32000-64000 bit/s, got 31999"),
        ("64001", "AAC bitrate must be 32000-64000 bit/s, got 64001"),
        ("-48000", "AAC bitrate must be 32000-64000 bit/s, got -48000"),
    ],
)
def test_parse_bitrate_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_bitrate(text)
    assert str(exc.value) == message


def test_parse_bounded() -> None:
    assert parse_bounded("part frames", "3", 3, 47) == 3
    with pytest.raises(ValueError) as exc:
        parse_bounded("part frames", "48", 3, 47)
    assert str(exc.value) == "part frames must be 3-47, got 48"
    with pytest.raises(ValueError) as exc:
        parse_bounded("segment parts", "five", 1, 30)
    assert str(exc.value) == "segment parts must be an integer, got 'five'"


def test_parse_addresses() -> None:
    assert parse_addresses(" 127.0.0.1, ,192.0.2.7 ,") == ("127.0.0.1", "192.0.2.7")
    assert parse_addresses("") == ()


def test_with_env_applies_every_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAJLIS_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("MAJLIS_ICE_ADDRESSES", "192.0.2.7,198.51.100.1")
    monkeypatch.setenv("MAJLIS_ICE_PORTS", "40000-40100")
    monkeypatch.setenv("MAJLIS_AAC_BITRATE", "32000")
    monkeypatch.setenv("MAJLIS_PART_FRAMES", "5")
    monkeypatch.setenv("MAJLIS_SEGMENT_PARTS", "10")
    base = Settings()
    settings = base.with_env()
    assert settings.admin_token == "s3cret"
    assert settings.ice_addresses == ("192.0.2.7", "198.51.100.1")
    assert settings.ice_port_range == (40000, 40100)
    assert settings.aac_bitrate == 32_000
    assert (settings.part_frames, settings.segment_parts) == (5, 10)
    assert base == Settings(), "with_env returns a new tree and leaves the old one alone"


def test_with_env_ignores_empty_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.setenv(name, "")
    assert Settings().with_env() == Settings()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAJLIS_ICE_PORTS", "40000", "port range must look like 40000-40100, got '40000'"),
        ("MAJLIS_ICE_PORTS", "80-90", "port range '80-90' must lie within 1024-65535, low <= high"),
        ("MAJLIS_AAC_BITRATE", "lots", "AAC bitrate must be an integer, got 'lots'"),
        ("MAJLIS_AAC_BITRATE", "128000", "AAC bitrate must be 32000-64000 bit/s, got 128000"),
        ("MAJLIS_PART_FRAMES", "2", "part frames must be 3-47, got 2"),
        ("MAJLIS_SEGMENT_PARTS", "x", "segment parts must be an integer, got 'x'"),
    ],
)
def test_with_env_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as exc:
        Settings().with_env()
    assert str(exc.value) == message


def test_stage_size_sets_the_publishers_it_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAJLIS_STAGE_SPEAKERS", "4")
    settings = Settings().with_env()
    assert settings.stage_speakers == 4
    assert settings.max_speakers == 1 + settings.max_cohosts + 4
    for bad in ("0", "51", "ten"):
        monkeypatch.setenv("MAJLIS_STAGE_SPEAKERS", bad)
        with pytest.raises(ValueError):
            Settings().with_env()
