"""The recording of one space on disk: the live segments themselves, fsync'd in order.

Layout under ``<data>/spaces/<id>/``: ``init.mp4``, ``s/<msn>.m4s`` and ``segments.jsonl``
(one line per segment, appended only after the segment file is durable). Synchronous: the
caller runs these methods in an executor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from majlis.packaging.cmaf import iter_boxes
from majlis.packaging.playlist import SegmentEntry


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename, fsync the folder: all or nothing."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _index_line(entry: SegmentEntry, size: int) -> str:
    return json.dumps(
        {
            "msn": entry.msn,
            "duration": entry.duration,
            "started_at": entry.started_at,
            "discontinuity": entry.discontinuity,
            "bytes": size,
        }
    )


class Recording:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.segment_dir = folder / "s"
        self.index_path = folder / "segments.jsonl"

    def create(self) -> None:
        self.segment_dir.mkdir(parents=True, exist_ok=True)

    @property
    def init_path(self) -> Path:
        return self.folder / "init.mp4"

    def has_init(self) -> bool:
        return self.init_path.exists()

    def write_init(self, data: bytes) -> None:
        self.create()
        write_durably(self.init_path, data)

    def read_init(self) -> bytes:
        return self.init_path.read_bytes()

    def segment_path(self, msn: int) -> Path:
        return self.segment_dir / f"{msn}.m4s"

    def write_segment(self, entry: SegmentEntry, data: bytes) -> None:
        write_durably(self.segment_path(entry.msn), data)
        line = _index_line(entry, len(data))
        # After a crash mid-append, start on a fresh line rather than glue onto the torn one.
        lead = "\n" if self._index_is_torn() else ""
        with open(self.index_path, "a", encoding="utf-8") as f:
            f.write(lead + line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write_copy(self, entries: list[SegmentEntry], segments: dict[int, bytes]) -> None:
        """A whole recording at once, into a new folder (a space taken over from another
        node, whose copy is safe in Redis): every segment file, one sync for all of them,
        then the index, so the index never names a segment that is not on disk. Segment by
        segment (three fsyncs each) a two-hour space would take seconds to minutes."""
        lines = []
        for entry in entries:
            data = segments[entry.msn]
            with open(self.segment_path(entry.msn), "wb") as f:
                f.write(data)
            lines.append(_index_line(entry, len(data)) + "\n")
        os.sync()
        write_durably(self.index_path, "".join(lines).encode())

    def _index_is_torn(self) -> bool:
        try:
            with open(self.index_path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except OSError:  # no index yet, or an empty one
            return False

    def load_entries(self) -> list[SegmentEntry]:
        if not self.index_path.exists():
            return []
        entries: list[SegmentEntry] = []
        for line in self.index_path.read_text(encoding="utf-8").splitlines():
            try:
                raw = json.loads(line)
                entry = SegmentEntry(
                    msn=int(raw["msn"]),
                    duration=float(raw["duration"]),
                    started_at=float(raw["started_at"]),
                    discontinuity=bool(raw.get("discontinuity", False)),
                )
            except (ValueError, KeyError, TypeError):
                # A line torn by a crash: the segment it names was never announced. Lines
                # after it were written after a restart and still count.
                continue
            if self.segment_path(entry.msn).exists():
                entries.append(entry)
        return entries

    def read_part(self, msn: int, index: int) -> bytes | None:
        """Cut part ``index`` out of a recorded segment: a part is one moof + mdat pair."""
        path = self.segment_path(msn)
        if not path.exists():
            return None
        data = path.read_bytes()
        boxes = list(iter_boxes(data))
        pairs = [
            data[a.offset : b.offset + b.size]
            for a, b in zip(boxes[::2], boxes[1::2], strict=False)
            if a.kind == "moof" and b.kind == "mdat"
        ]
        return pairs[index] if 0 <= index < len(pairs) else None
