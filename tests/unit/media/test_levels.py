"""Levels: dBFS arithmetic and the meter's attack, release and talking hold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from majlis.clock import FakeClock
from majlis.media.frames import SAMPLE_RATE, TICK_SAMPLES, TICK_SECONDS, Samples, silence
from majlis.media.levels import FLOOR_DBFS, TALKING_HOLD_S, LevelMeter, rms_dbfs


def sine(amplitude: float, freq: float = 1000.0, n: int = TICK_SAMPLES) -> Samples:
    t = np.arange(n) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_rms_dbfs_of_known_signals() -> None:
    assert rms_dbfs(sine(1.0)) == pytest.approx(-3.0103, abs=0.01)
    assert rms_dbfs(np.full(960, 0.1, dtype=np.float32)) == pytest.approx(-20.0, abs=1e-4)
    assert rms_dbfs(sine(0.01)) == pytest.approx(-43.0103, abs=0.01)


def test_rms_dbfs_floor() -> None:
    assert rms_dbfs(silence()) == FLOOR_DBFS
    assert rms_dbfs(silence(0)) == FLOOR_DBFS
    assert rms_dbfs(np.full(960, 1e-7, dtype=np.float32)) == FLOOR_DBFS


def test_meter_attacks_at_once_and_releases_slowly() -> None:
    meter = LevelMeter()
    assert meter.update(sine(0.5), now=0.0) == pytest.approx(-9.03, abs=0.01)
    # Silence: 1.5 dB per update, not a drop to the floor.
    assert meter.update(silence(), now=0.02) == pytest.approx(-10.53, abs=0.01)
    assert meter.update(silence(), now=0.04) == pytest.approx(-12.03, abs=0.01)
    assert meter.update(sine(1.0), now=0.06) == pytest.approx(-3.01, abs=0.01)


def test_talking_holds_between_words_then_stops() -> None:
    clock = FakeClock()
    meter = LevelMeter()
    assert not meter.talking(clock.monotonic())
    meter.update(sine(0.1), clock.monotonic())  # -23 dBFS: speech
    assert meter.talking(clock.monotonic())
    spoke_at = clock.monotonic()
    while clock.monotonic() - spoke_at < TALKING_HOLD_S - 1e-9:
        clock.advance(TICK_SECONDS)
        meter.update(silence(), clock.monotonic())
        assert meter.talking(clock.monotonic()), "no flicker within the hold"
    clock.advance(TICK_SECONDS)
    meter.update(silence(), clock.monotonic())
    assert not meter.talking(clock.monotonic())


def test_room_noise_is_not_talking() -> None:
    meter = LevelMeter()
    meter.update(sine(0.001), now=0.0)  # -63 dBFS: a laptop mic in a quiet room
    assert not meter.talking(0.0)
    assert meter.last_loud_at == -math.inf
