"""Groups AAC access units into CMAF parts and parts into segments.

Pure bookkeeping: no I/O, no clock reads. A part is ``part_frames`` access units; a segment
is ``segment_parts`` parts, so every segment is exactly its parts' bytes joined.
"""

from __future__ import annotations

from dataclasses import dataclass

from majlis.config import AAC_FRAME_SAMPLES, SAMPLE_RATE
from majlis.packaging.cmaf import fragment


@dataclass(frozen=True, slots=True)
class Part:
    msn: int  # media sequence number of the parent segment
    index: int  # position within the segment
    data: bytes
    duration: float
    last_in_segment: bool
    # Wall-clock time of the first sample: becomes EXT-X-PROGRAM-DATE-TIME.
    started_at: float


class Segmenter:
    def __init__(self, part_frames: int, segment_parts: int, first_msn: int = 0) -> None:
        self.part_frames = part_frames
        self.segment_parts = segment_parts
        self._frames: list[bytes] = []
        self._msn = first_msn
        self._part_index = 0
        self._fragment_seq = 1
        self._decode_time = 0
        self._part_started_at = 0.0

    @property
    def part_duration(self) -> float:
        return self.part_frames * AAC_FRAME_SAMPLES / SAMPLE_RATE

    def add(self, frame: bytes, frame_started_at: float) -> Part | None:
        """Add one access unit; returns a Part when it completes one."""
        if not self._frames:
            self._part_started_at = frame_started_at
        self._frames.append(frame)
        if len(self._frames) < self.part_frames:
            return None
        data = fragment(self._fragment_seq, self._decode_time, self._frames, AAC_FRAME_SAMPLES)
        last = self._part_index == self.segment_parts - 1
        part = Part(
            msn=self._msn,
            index=self._part_index,
            data=data,
            duration=self.part_duration,
            last_in_segment=last,
            started_at=self._part_started_at,
        )
        self._fragment_seq += 1
        self._decode_time += len(self._frames) * AAC_FRAME_SAMPLES
        self._frames = []
        if last:
            self._msn += 1
            self._part_index = 0
        else:
            self._part_index += 1
        return part
