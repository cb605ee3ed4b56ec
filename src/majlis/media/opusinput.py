"""A speaker's Opus packets, decoded on the mix thread at the tick that needs them.

aiortc decodes every received Opus frame on a thread of its own per speaker and hands each
frame back to the event loop: with 10 speakers that is 1,000 thread wake-ups a second, and
measured on the 10-speaker benchmark the decoder threads cost 2.3 times what the same frames
cost when one thread decodes them back to back. So the network side only queues the
encoded packets (a deque append), and the mixer's thread, which wakes every 20 ms anyway,
decodes whatever arrived for each speaker just before it pulls that speaker's tick.

libopus decodes straight to mono (it folds a stereo stream itself), so no downmix either.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from majlis.media.frames import SAMPLE_RATE, Samples, s16_interleaved_to_mono
from majlis.media.inputbuffer import InputBuffer

log = logging.getLogger(__name__)

# Packets waiting for the mix thread. One tick drains them all; the bound only matters
# when the mix thread is stopped (a space being ended) or a sender floods: 50 packets
# is a second of 20 ms frames, beyond which the input buffer would trim them anyway.
MAX_PENDING_PACKETS = 50
# An Opus packet is at most 1275 bytes per frame and 120 ms of frames (RFC 6716 §3.2.5).
MAX_PACKET_BYTES = 1275 * 6


@dataclass(slots=True)
class DecodeStats:
    """Written by the mix thread only; read by /metrics."""

    cpu_seconds: float = 0.0
    packets: int = 0
    errors: int = 0
    # Counted on the network side: packets refused (empty, oversized, queue full).
    dropped: int = 0


class OpusInput:
    """The mixer's source for one speaker: Opus packets in, 48 kHz mono float out."""

    def __init__(self, buffer: InputBuffer, stats: DecodeStats | None = None) -> None:
        self.buffer = buffer
        self.stats = stats if stats is not None else DecodeStats()
        # deque.append and popleft are atomic: the event loop appends, the mix thread pops.
        self._packets: deque[bytes] = deque()
        self._decoder: Any = None

    def push_packet(self, data: bytes) -> None:
        """Queue one encoded packet (any thread; never blocks, never decodes)."""
        if not data or len(data) > MAX_PACKET_BYTES or len(self._packets) >= MAX_PENDING_PACKETS:
            self.stats.dropped += 1
            return
        self._packets.append(data)

    @property
    def pending(self) -> int:
        """Packets queued and not yet decoded."""
        return len(self._packets)

    def pull(self, n: int) -> Samples:
        if self._packets:
            self._decode_pending()
        return self.buffer.pull(n)

    def _decode_pending(self) -> None:
        started = time.thread_time()
        if self._decoder is None:
            self._decoder = _new_decoder()
        while self._packets:
            data = self._packets.popleft()
            try:
                frames = self._decoder.decode(av.Packet(data))
            except (av.FFmpegError, ValueError) as exc:
                # A corrupt packet costs its own 20 ms, never the speaker or the mix.
                self.stats.errors += 1
                log.debug("undecodable Opus packet (%d bytes): %s", len(data), exc)
                continue
            for frame in frames:
                self.buffer.push(_mono(frame))
            self.stats.packets += 1
        self.stats.cpu_seconds += time.thread_time() - started


def _new_decoder() -> Any:
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = SAMPLE_RATE
    decoder.layout = "mono"
    return decoder


def _mono(frame: Any) -> Samples:
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    if data.dtype == np.int16 and not frame.format.is_planar:
        return s16_interleaved_to_mono(data.reshape(-1), channels)
    rows = data.reshape(channels, -1) if frame.format.is_planar else data.reshape(-1, channels).T
    scale = np.float32(1.0 / 32768.0) if data.dtype == np.int16 else np.float32(1.0)
    mono: Samples = rows.astype(np.float32).mean(axis=0, dtype=np.float32) * scale
    return mono
