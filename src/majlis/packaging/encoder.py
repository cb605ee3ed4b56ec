"""AAC-LC encoding through PyAV (FFmpeg's native encoder). Synchronous: run it off the loop."""

from __future__ import annotations

from typing import Any

import av
import numpy as np

from majlis.config import AAC_FRAME_SAMPLES, SAMPLE_RATE
from majlis.media.frames import Samples

# FFmpeg's AAC encoder delays its output by one frame (initial_padding = 1024 samples).
AAC_PRIMING_SAMPLES = 1024


class AacEncoder:
    """Feed mono float samples of any length; get whole AAC access units back."""

    def __init__(self, bitrate: int) -> None:
        ctx: Any = av.CodecContext.create("aac", "w")
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = "fltp"
        ctx.bit_rate = bitrate
        ctx.open()
        self._ctx = ctx
        self.bitrate = bitrate
        self._pending = np.zeros(0, dtype=np.float32)
        self._pts = 0

    @property
    def audio_specific_config(self) -> bytes:
        return bytes(self._ctx.extradata)

    def encode(self, samples: Samples) -> list[bytes]:
        self._pending = np.concatenate((self._pending, samples))
        packets: list[bytes] = []
        while self._pending.size >= AAC_FRAME_SAMPLES:
            chunk = self._pending[:AAC_FRAME_SAMPLES]
            self._pending = self._pending[AAC_FRAME_SAMPLES:]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self._pts
            self._pts += AAC_FRAME_SAMPLES
            packets.extend(bytes(p) for p in self._ctx.encode(frame))
        return packets
