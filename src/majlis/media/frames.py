"""Audio frame arithmetic: the mixer works on 20 ms of 48 kHz mono float32."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000
TICK_SECONDS = 0.020
TICK_SAMPLES = 960

Samples = npt.NDArray[np.float32]


def silence(n: int = TICK_SAMPLES) -> Samples:
    return np.zeros(n, dtype=np.float32)


def s16_interleaved_to_mono(data: npt.NDArray[np.int16], channels: int) -> Samples:
    """Decoded Opus arrives as interleaved s16 (stereo from aiortc): average to mono float."""
    as_float = data.astype(np.float32) * (1.0 / 32768.0)
    if channels == 1:
        return as_float
    frames = as_float.reshape(-1, channels)
    mono: Samples = frames.mean(axis=1, dtype=np.float32)
    return mono
