"""Mixer: one tick of every input summed, mute, stalled inputs, levels."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from majlis.clock import FakeClock
from majlis.media.frames import SAMPLE_RATE, TICK_SAMPLES, TICK_SECONDS, Samples, silence
from majlis.media.inputbuffer import InputBuffer
from majlis.media.levels import FLOOR_DBFS
from majlis.media.limiter import KNEE
from majlis.media.mixer import Mixer


def tone(freq: float, amplitude: float, ticks: int) -> Samples:
    t = np.arange(ticks * TICK_SAMPLES) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def fed(samples: Samples) -> InputBuffer:
    buf = InputBuffer()
    buf.push(samples)
    return buf


def test_no_inputs_is_silence() -> None:
    out = Mixer().tick(0.0)
    np.testing.assert_array_equal(out, silence())


def test_output_is_the_sum_of_the_inputs() -> None:
    a, b = tone(300, 0.2, 4), tone(500, 0.25, 4)
    mixer = Mixer()
    mixer.add_input("a", fed(a))
    mixer.add_input("b", fed(b))
    out = np.concatenate([mixer.tick(k * TICK_SECONDS) for k in range(4)])
    # Peaks stay below the limiter's knee, so the mix is the exact sum.
    assert np.abs(a + b).max() < KNEE
    np.testing.assert_allclose(out, a + b, atol=1e-7)


def test_loud_sum_is_limited() -> None:
    mixer = Mixer()
    for k in range(6):
        mixer.add_input(f"s{k}", fed(tone(200 + 50 * k, 0.9, 2)))
    out = mixer.tick(0.0)
    assert 0.6 < np.abs(out).max() < 1.0


def test_muted_input_is_metered_but_not_mixed() -> None:
    a, b = tone(300, 0.2, 2), tone(500, 0.25, 2)
    mixer = Mixer()
    mixer.add_input("a", fed(a))
    mixer.add_input("b", fed(b))
    mixer.set_muted("b", True)
    np.testing.assert_allclose(mixer.tick(0.0), a[:TICK_SAMPLES], atol=1e-7)
    levels = {lv.input_id: lv for lv in mixer.levels(0.0)}
    assert levels["b"].muted and not levels["a"].muted
    # The host still sees a muted speaker trying to talk.
    assert levels["b"].talking
    assert levels["b"].level_dbfs == pytest.approx(-15.05, abs=0.1)
    mixer.set_muted("b", False)
    np.testing.assert_allclose(mixer.tick(0.02), (a + b)[TICK_SAMPLES:], atol=1e-7)


def test_stalled_input_contributes_silence_without_blocking() -> None:
    a = tone(300, 0.2, 3)
    mixer = Mixer()
    mixer.add_input("a", fed(a))
    mixer.add_input("stalled", InputBuffer())  # joined, never sends a packet
    outputs: list[Samples] = []
    worker = threading.Thread(target=lambda: outputs.extend(mixer.tick(0.0) for _ in range(3)))
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "a stalled input blocked the mixer"
    np.testing.assert_allclose(np.concatenate(outputs), a, atol=1e-7)
    stalled = next(lv for lv in mixer.levels(0.06) if lv.input_id == "stalled")
    assert stalled.level_dbfs == FLOOR_DBFS
    assert not stalled.talking


def test_removed_input_leaves_the_mix() -> None:
    mixer = Mixer()
    mixer.add_input("a", fed(tone(300, 0.2, 2)))
    mixer.remove_input("a")
    mixer.remove_input("never-added")
    mixer.set_muted("never-added", True)
    np.testing.assert_array_equal(mixer.tick(0.0), silence())
    assert mixer.levels(0.0) == []


def test_levels_follow_who_is_talking() -> None:
    clock = FakeClock()
    mixer = Mixer()
    talker = InputBuffer()
    quiet = InputBuffer()
    mixer.add_input("talker", talker)
    mixer.add_input("quiet", quiet)
    talker.push(tone(220, 0.3, 10))
    quiet.push(silence(10 * TICK_SAMPLES))
    for _ in range(10):
        mixer.tick(clock.monotonic())
        clock.advance(TICK_SECONDS)
    levels = {lv.input_id: lv for lv in mixer.levels(clock.monotonic())}
    assert levels["talker"].talking
    assert levels["talker"].level_dbfs == pytest.approx(-13.5, abs=0.2)
    assert not levels["quiet"].talking
    assert levels["quiet"].level_dbfs == FLOOR_DBFS
    # The talker stops (its buffer runs dry): after the hold it is no longer talking.
    for _ in range(30):
        mixer.tick(clock.monotonic())
        clock.advance(TICK_SECONDS)
    levels = {lv.input_id: lv for lv in mixer.levels(clock.monotonic())}
    assert not levels["talker"].talking
    assert levels["talker"].level_dbfs < -50
