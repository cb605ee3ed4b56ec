"""Segmenter: part and segment numbering, segments are their parts joined, time runs on."""

from __future__ import annotations

import struct

import pytest

from majlis.config import AAC_FRAME_SAMPLES, SAMPLE_RATE
from majlis.packaging.cmaf import iter_boxes
from majlis.packaging.segmenter import Part, Segmenter
from tests.unit.mp4 import find

FRAME_S = AAC_FRAME_SAMPLES / SAMPLE_RATE


def feed(seg: Segmenter, frames: int, t0: float = 100.0) -> list[Part]:
    parts = []
    for k in range(frames):
        # Distinct, recognisable access units of varying size.
        frame = struct.pack(">I", k) * (1 + k % 5)
        if (part := seg.add(frame, t0 + k * FRAME_S)) is not None:
            parts.append(part)
    return parts


def decode_time(part: Part) -> int:
    return int(struct.unpack(">Q", find(part.data, "moof/traf/tfdt").full()[2])[0])


def sequence(part: Part) -> int:
    return int(struct.unpack(">I", find(part.data, "moof/mfhd").full()[2])[0])


def sample_count(part: Part) -> int:
    return int(struct.unpack_from(">I", find(part.data, "moof/traf/trun").full()[2])[0])


def test_part_and_segment_numbering() -> None:
    seg = Segmenter(part_frames=10, segment_parts=5)
    parts = feed(seg, 10 * 12 + 7)  # 12 whole parts; 7 frames wait for the 13th
    assert [(p.msn, p.index) for p in parts] == [(m, i) for m in range(3) for i in range(5)][:12]
    assert [p.last_in_segment for p in parts] == [i == 4 for m in range(3) for i in range(5)][:12]
    assert all(p.duration == pytest.approx(10 * FRAME_S) for p in parts)
    assert seg.part_duration == pytest.approx(0.213333, abs=1e-6)


def test_first_msn_continues_numbering_after_a_restart() -> None:
    parts = feed(Segmenter(part_frames=3, segment_parts=2, first_msn=41), 3 * 4)
    assert [(p.msn, p.index) for p in parts] == [(41, 0), (41, 1), (42, 0), (42, 1)]


def test_nothing_until_a_part_is_full() -> None:
    seg = Segmenter(part_frames=10, segment_parts=5)
    assert feed(seg, 9) == []
    assert seg.add(b"x", 0.0) is not None


def test_started_at_is_the_first_frame_of_the_part() -> None:
    parts = feed(Segmenter(part_frames=10, segment_parts=5), 30, t0=500.0)
    assert [p.started_at for p in parts] == pytest.approx(
        [500.0 + k * 10 * FRAME_S for k in range(3)]
    )


def test_each_part_is_one_fragment_with_its_frames() -> None:
    seg = Segmenter(part_frames=4, segment_parts=3)
    frames = [bytes([k]) * (10 + k) for k in range(8)]
    parts = [p for k, f in enumerate(frames) if (p := seg.add(f, float(k))) is not None]
    assert len(parts) == 2
    for part, chunk in zip(parts, (frames[:4], frames[4:]), strict=True):
        boxes = list(iter_boxes(part.data))
        assert [b.kind for b in boxes] == ["moof", "mdat"]
        mdat = boxes[1]
        assert part.data[mdat.offset + 8 : mdat.offset + mdat.size] == b"".join(chunk)
        assert sample_count(part) == 4


def test_segment_is_exactly_its_parts_joined_and_time_is_continuous() -> None:
    seg = Segmenter(part_frames=10, segment_parts=5)
    parts = feed(seg, 10 * 15)
    segments = {msn: b"".join(p.data for p in parts if p.msn == msn) for msn in range(3)}
    for msn, data in segments.items():
        boxes = list(iter_boxes(data))
        assert [b.kind for b in boxes] == ["moof", "mdat"] * 5
        # Cut the segment back on moof boundaries: the pieces are the parts, byte for byte.
        pieces = [
            data[a.offset : b.offset + b.size] for a, b in zip(boxes[::2], boxes[1::2], strict=True)
        ]
        assert pieces == [p.data for p in parts if p.msn == msn]
    # Fragment sequence numbers and decode times run on across part and segment borders.
    assert [sequence(p) for p in parts] == list(range(1, 16))
    assert [decode_time(p) for p in parts] == [k * 10 * AAC_FRAME_SAMPLES for k in range(15)]
