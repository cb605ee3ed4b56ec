"""Recording: durable segments and index, crash recovery, parts cut back out of segments."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from majlis.packaging.playlist import SegmentEntry
from majlis.packaging.segmenter import Part, Segmenter
from majlis.storage.recording import Recording, write_durably

T0 = 1_800_000_000.0


def recorded_parts(segments: int, first_msn: int = 0) -> dict[int, list[Part]]:
    seg = Segmenter(part_frames=4, segment_parts=5, first_msn=first_msn)
    by_msn: dict[int, list[Part]] = {}
    for k in range(segments * 5 * 4):
        frame = bytes([k % 251]) * (20 + k % 7)
        if (part := seg.add(frame, T0 + k * 0.02)) is not None:
            by_msn.setdefault(part.msn, []).append(part)
    return by_msn


def entry(msn: int, discontinuity: bool = False) -> SegmentEntry:
    return SegmentEntry(msn, 0.42667, T0 + msn * 0.42667, discontinuity)


def record(rec: Recording, msns: range, discontinuity_at: int | None = None) -> None:
    parts = recorded_parts(len(msns), first_msn=msns[0])
    for msn in msns:
        data = b"".join(p.data for p in parts[msn])
        rec.write_segment(entry(msn, msn == discontinuity_at), data)


@pytest.fixture
def rec(tmp_path: Path) -> Recording:
    recording = Recording(tmp_path / "spaces" / "abc")
    recording.create()
    return recording


def test_init_roundtrip(rec: Recording) -> None:
    assert not rec.has_init()
    rec.write_init(b"ftyp+moov")
    assert rec.has_init()
    assert rec.read_init() == b"ftyp+moov"


def test_write_segment_leaves_file_and_index_line(rec: Recording) -> None:
    parts = recorded_parts(1)[0]
    data = b"".join(p.data for p in parts)
    rec.write_segment(entry(0), data)
    assert rec.segment_path(0).read_bytes() == data
    assert not list(rec.segment_dir.glob("*.tmp")), "the temporary name must be renamed away"
    (line,) = rec.index_path.read_text().splitlines()
    assert json.loads(line) == {
        "msn": 0,
        "duration": 0.42667,
        "started_at": T0,
        "discontinuity": False,
        "bytes": len(data),
    }
    assert rec.load_entries() == [entry(0)]


def test_segment_is_durable_before_it_is_indexed(
    rec: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(os, "fsync", fsync)
    rec.write_segment(entry(0), b"segment bytes")
    # File, then the folder holding its new name, then the index line: a crash at any point
    # leaves either nothing announced or an announced segment that is really on disk.
    assert synced == [
        str(rec.segment_dir / "0.m4s.tmp"),
        str(rec.segment_dir),
        str(rec.index_path),
    ]


def test_write_durably_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    write_durably(path, b"first")
    write_durably(path, b"second, longer")
    assert path.read_bytes() == b"second, longer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_load_entries_of_a_new_recording_is_empty(rec: Recording) -> None:
    assert rec.load_entries() == []


def test_load_entries_roundtrip(rec: Recording) -> None:
    record(rec, range(0, 4), discontinuity_at=2)
    loaded = Recording(rec.folder).load_entries()
    assert loaded == [entry(0), entry(1), entry(2, True), entry(3)]


def test_torn_last_line_is_ignored(rec: Recording) -> None:
    record(rec, range(0, 3))
    with open(rec.index_path, "a", encoding="utf-8") as f:
        f.write('{"msn": 3, "duration": 0.4')  # the process died mid-append
    assert Recording(rec.folder).load_entries() == [entry(0), entry(1), entry(2)]


def test_entries_whose_file_is_missing_are_ignored(rec: Recording) -> None:
    record(rec, range(0, 4))
    rec.segment_path(1).unlink()
    assert Recording(rec.folder).load_entries() == [entry(0), entry(2), entry(3)]


def test_recording_continues_after_a_torn_line(rec: Recording) -> None:
    record(rec, range(0, 2))
    with open(rec.index_path, "a", encoding="utf-8") as f:
        f.write('{"msn": 2, "dura')
    # Restart: the torn segment was never announced, recording resumes at 2.
    resumed = Recording(rec.folder)
    assert [e.msn for e in resumed.load_entries()] == [0, 1]
    record(resumed, range(2, 4), discontinuity_at=2)
    # A second restart must still see what was recorded after the first one.
    assert Recording(rec.folder).load_entries() == [entry(0), entry(1), entry(2, True), entry(3)]


def test_read_part_cuts_parts_back_out_byte_for_byte(rec: Recording) -> None:
    parts = recorded_parts(3)
    for msn, msn_parts in parts.items():
        rec.write_segment(entry(msn), b"".join(p.data for p in msn_parts))
    for msn, msn_parts in parts.items():
        for part in msn_parts:
            assert rec.read_part(msn, part.index) == part.data
    assert rec.read_part(0, 5) is None
    assert rec.read_part(0, -1) is None
    assert rec.read_part(9, 0) is None


def test_a_copied_recording_reads_back_and_is_synced_before_its_index(
    rec: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = recorded_parts(3)
    segments = {msn: b"".join(p.data for p in parts[msn]) for msn in range(3)}
    entries = [entry(0), entry(1), entry(2, discontinuity=True)]
    events: list[str] = []
    real_sync, real_replace = os.sync, os.replace

    def sync() -> None:
        events.append("sync")
        real_sync()

    def replace(src: str, dst: str) -> None:
        events.append(f"replace {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "sync", sync)
    monkeypatch.setattr(os, "replace", replace)
    rec.write_copy(entries, segments)
    # Every segment is on disk before the index that names them appears.
    assert events == ["sync", "replace segments.jsonl"]
    assert rec.load_entries() == entries
    assert all(rec.segment_path(m).read_bytes() == segments[m] for m in range(3))
    assert rec.read_part(1, 0) == parts[1][0].data
    # Live recording goes on after the copy, on a line of its own.
    record(rec, range(3, 4))
    assert [e.msn for e in rec.load_entries()] == [0, 1, 2, 3]
