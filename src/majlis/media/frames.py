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
    if channels == 1:
        as_float: Samples = data.astype(np.float32) * np.float32(1.0 / 32768.0)
        return as_float
    # Strided sums, not reshape().mean(axis=1): this runs on the event loop for every 20 ms
    # frame of every speaker, and np.mean's overhead made it the loop's largest single cost
    # (py-spy, 10 speakers). For stereo the result is bit-identical.
    mono: Samples = data[0::channels].astype(np.float32)
    for channel in range(1, channels):
        mono += data[channel::channels]
    mono *= np.float32(1.0 / (32768.0 * channels))
    return mono
