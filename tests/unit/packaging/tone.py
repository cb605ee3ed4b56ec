"""A tone encoded to AAC once, shared by the packaging tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from majlis.config import SAMPLE_RATE
from majlis.media.frames import TICK_SAMPLES, Samples
from majlis.packaging.encoder import AacEncoder

TONE_HZ = 1000.0
# The tone starts after this much silence, so onsets can be located after decoding.
ONSET = 4_800


@dataclass(frozen=True, slots=True)
class Encoded:
    source: Samples
    packets: list[bytes]
    asc: bytes
    bitrate: int


def tone_with_onset(seconds: float, onset: int = ONSET) -> Samples:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    x[:onset] = 0.0
    return x


def encode(source: Samples, bitrate: int = 48_000) -> Encoded:
    encoder = AacEncoder(bitrate)
    packets: list[bytes] = []
    # Fed one mixer tick at a time, as the pipeline does.
    for start in range(0, source.size, TICK_SAMPLES):
        packets.extend(encoder.encode(source[start : start + TICK_SAMPLES]))
    return Encoded(source, packets, encoder.audio_specific_config, bitrate)
