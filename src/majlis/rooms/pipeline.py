"""A live space's media pipeline: clock-driven mix → AAC → CMAF parts → live edge + disk.

The mix, encode and packaging run on a thread of their own, ticking every 20 ms from the
monotonic clock, never from packet arrivals: a slow speaker cannot stall it and the event
loop never waits on the encoder. Finished parts cross to the loop through a queue; one
consumer task publishes them in order and makes each closed segment durable before the
playlist announces it.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from majlis.clock import Clock
from majlis.config import SAMPLE_RATE, Settings
from majlis.media.frames import TICK_SECONDS
from majlis.media.mixer import Mixer
from majlis.media.opusinput import DecodeStats
from majlis.packaging.cmaf import init_segment
from majlis.packaging.encoder import AAC_PRIMING_SAMPLES, AacEncoder
from majlis.packaging.liveedge import LiveEdge
from majlis.packaging.playlist import SegmentEntry
from majlis.packaging.segmenter import Part, Segmenter
from majlis.storage.recording import Recording
from majlis.trust.provenance import ProvenanceLog

log = logging.getLogger(__name__)

# Behind the clock by more than this (process stopped, machine suspended), the pipeline
# skips ahead instead of racing to catch up with a burst of silence.
MAX_CATCH_UP_S = 1.0


# Upper bounds (seconds) of the segment write histogram: a write plus fsync of ~8 KB takes
# about a millisecond on an idle SSD and can reach a second on a busy disk.
SEGMENT_WRITE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(slots=True)
class PipelineStats:
    ticks: int = 0
    parts: int = 0
    late_ticks: int = 0
    skipped_ticks: int = 0
    max_lag_s: float = 0.0
    # How far the latest tick ran behind its clock deadline.
    lag_s: float = 0.0
    # CPU seconds spent by the pipeline thread (decode + mix + encode + package).
    cpu_seconds: float = 0.0
    # The speakers' Opus decoding, done on the pipeline thread (part of cpu_seconds).
    decode: DecodeStats = field(default_factory=DecodeStats)
    # Seconds from a segment's close to its file being durable, counted per bucket of
    # SEGMENT_WRITE_BUCKETS_S (the last count is above every bound).
    segment_writes: list[int] = field(
        default_factory=lambda: [0] * (len(SEGMENT_WRITE_BUCKETS_S) + 1)
    )
    segment_write_seconds: float = 0.0

    def observe_segment_write(self, seconds: float) -> None:
        self.segment_writes[bisect.bisect_left(SEGMENT_WRITE_BUCKETS_S, seconds)] += 1
        self.segment_write_seconds += seconds


class _MixThread(threading.Thread):
    def __init__(
        self,
        mixer: Mixer,
        encoder: AacEncoder,
        segmenter: Segmenter,
        clock: Clock,
        emit: Callable[[Part], None],
        stats: PipelineStats,
    ) -> None:
        super().__init__(name="majlis-mix", daemon=True)
        self.mixer = mixer
        self.encoder = encoder
        self.segmenter = segmenter
        self.clock = clock
        self.emit = emit
        self.stats = stats
        self.stopping = threading.Event()
        self.wall_start = 0.0

    def run(self) -> None:
        start = self.clock.monotonic()
        self.wall_start = self.clock.wall()
        frames_out = 0
        tick = 0
        while not self.stopping.is_set():
            deadline = start + tick * TICK_SECONDS
            delay = deadline - self.clock.monotonic()
            if delay > 0 and self.stopping.wait(delay):
                break
            lag = self.clock.monotonic() - deadline
            if lag > MAX_CATCH_UP_S:
                skipped = int(lag / TICK_SECONDS)
                tick += skipped
                self.stats.skipped_ticks += skipped
                continue
            cpu0 = time.thread_time()
            mixed = self.mixer.tick(self.clock.monotonic())
            for packet in self.encoder.encode(mixed):
                # Packet k holds samples from (k * 1024 - priming): its wall time follows.
                sample = frames_out * 1024 - AAC_PRIMING_SAMPLES
                frames_out += 1
                part = self.segmenter.add(packet, self.wall_start + sample / SAMPLE_RATE)
                if part is not None:
                    self.emit(part)
                    self.stats.parts += 1
            self.stats.cpu_seconds += time.thread_time() - cpu0
            self.stats.ticks += 1
            if lag > TICK_SECONDS:
                self.stats.late_ticks += 1
            self.stats.max_lag_s = max(self.stats.max_lag_s, lag)
            self.stats.lag_s = lag
            tick += 1


class RecordingSink(Protocol):
    """Where a copy of the recording goes as it is made (the cluster's shared store)."""

    def init(self, space_id: str, data: bytes) -> None: ...

    async def segment(self, space_id: str, entry: SegmentEntry, data: bytes) -> None: ...

    def sealed(self, space_id: str, data: bytes) -> None: ...


class LivePipeline:
    def __init__(
        self,
        *,
        space_id: str,
        settings: Settings,
        clock: Clock,
        mixer: Mixer,
        edge: LiveEdge,
        recording: Recording,
        disk: ThreadPoolExecutor,
        provenance: ProvenanceLog,
    ) -> None:
        self.space_id = space_id
        self.settings = settings
        self.provenance = provenance
        self.sink: RecordingSink | None = None
        self.clock = clock
        self.mixer = mixer
        self.edge = edge
        self.recording = recording
        self.disk = disk
        self.stats = PipelineStats()
        self._queue: asyncio.Queue[Part | None] = asyncio.Queue()
        self._thread: _MixThread | None = None
        self._consumer: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        encoder = await loop.run_in_executor(None, AacEncoder, self.settings.aac_bitrate)
        init = init_segment(
            sample_rate=SAMPLE_RATE,
            channels=1,
            asc=encoder.audio_specific_config,
            bitrate=encoder.bitrate,
            priming=AAC_PRIMING_SAMPLES,
        )
        await loop.run_in_executor(self.disk, self.recording.write_init, init)
        if self.sink is not None:
            self.sink.init(self.space_id, init)
        self.provenance.start(init)
        self.edge.set_init(init)
        segmenter = Segmenter(
            self.settings.part_frames, self.settings.segment_parts, first_msn=self.edge.next_msn
        )

        def emit(part: Part) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, part)

        self._consumer = asyncio.create_task(self._consume(), name="majlis-parts")
        self._thread = _MixThread(self.mixer, encoder, segmenter, self.clock, emit, self.stats)
        self._thread.start()

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while (part := await self._queue.get()) is not None:
            self.edge.add_part(part.msn, part.index, part.data, part.duration, part.started_at)
            if part.last_in_segment:
                await self._close_segment(loop, part.msn, part.duration * (part.index + 1))

    async def _close_segment(
        self, loop: asyncio.AbstractEventLoop, msn: int, duration: float
    ) -> None:
        entry = self.edge.closing_entry(msn, duration)
        data = b"".join(self.edge.pending_parts())
        started = time.perf_counter()
        digest = await loop.run_in_executor(self.disk, self._write_segment, entry, data)
        self.stats.observe_segment_write(time.perf_counter() - started)
        if self.sink is not None:
            await self.sink.segment(self.space_id, entry, data)
        # Chained before the playlist lists it: the provenance never lags the playlist.
        self.provenance.add(entry.msn, digest, entry.duration)
        self.edge.complete_segment(entry)

    def _write_segment(self, entry: SegmentEntry, data: bytes) -> bytes:
        self.recording.write_segment(entry, data)
        return hashlib.sha256(data).digest()

    async def stop(self) -> None:
        """Stop the clock, publish what is queued, and close a partly filled segment."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.stopping.set()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._queue.put_nowait(None)
        if self._consumer is not None:
            await self._consumer
        pending = self.edge.pending_parts()
        if pending:
            loop = asyncio.get_running_loop()
            count = len(pending)
            await self._close_segment(loop, self.edge.next_msn, self.settings.part_duration * count)
