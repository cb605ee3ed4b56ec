"""soft_limit: transparent below the knee, never full scale, never folding over."""

from __future__ import annotations

import numpy as np

from majlis.media.frames import SAMPLE_RATE, Samples
from majlis.media.limiter import KNEE, soft_limit


def _speakers(count: int, seconds: float = 0.5) -> Samples:
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    voices = [np.sin(2 * np.pi * (180 + 37 * k) * t + k) for k in range(count)]
    return np.sum(voices, axis=0).astype(np.float32)


def test_identity_below_the_knee() -> None:
    x = np.linspace(-KNEE, KNEE, 10_001, dtype=np.float32)
    out = soft_limit(x)
    np.testing.assert_array_equal(out, x)
    assert out.dtype == np.float32


def test_ten_full_scale_speakers_stay_below_full_scale() -> None:
    loud = _speakers(10)
    assert np.abs(loud).max() > 9.0, "the test signal must really be ten speakers loud"
    out = soft_limit(loud)
    assert out.dtype == np.float32
    assert np.abs(out).max() < 1.0


def test_output_below_full_scale_for_any_input() -> None:
    x = np.array([0.61, 1.0, 2.0, 10.0, 1e3, 1e30], dtype=np.float32)
    for value in (x, -x):
        out = soft_limit(value)
        assert np.all(np.abs(out) < 1.0), out


def test_monotonic_and_no_sign_flips() -> None:
    x = np.linspace(-20.0, 20.0, 400_001, dtype=np.float32)
    out = soft_limit(x)
    assert np.all(np.diff(out) >= 0.0), "a louder input must never come out quieter"
    np.testing.assert_array_equal(np.sign(out), np.sign(x))


def test_continuous_at_the_knee() -> None:
    # The curve leaves the identity with slope 1: no click when a sum crosses the knee.
    eps = np.float32(1e-3)
    x = np.array([KNEE - eps, KNEE + eps], dtype=np.float32)
    out = soft_limit(x)
    assert abs(float(out[1] - out[0]) - 2 * float(eps)) < 1e-4
    above = soft_limit(np.array([KNEE + 0.1], dtype=np.float32))
    assert KNEE < float(above[0]) < KNEE + 0.1, "above the knee the curve must compress"
