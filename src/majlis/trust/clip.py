"""Clips: excerpts of a signed replay made of whole original segments. Pure.

A clip is never stored or re-encoded: its id names the source space and a range of segment
numbers, and its playlist lists the source's own segment URLs. `clip.json` repeats the
hashes of those segments; it is not signed itself, because `majlis verify` checks every
segment of the clip against the signed provenance of the source.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from majlis.trust import provenance

_CLIP_ID = re.compile(r"([A-Za-z0-9_-]{1,32})\.(\d{1,9})-(\d{1,9})")


@dataclass(frozen=True, slots=True)
class ClipRange:
    space_id: str
    first: int  # segment numbers, both included
    last: int

    @property
    def clip_id(self) -> str:
        return f"{self.space_id}.{self.first}-{self.last}"


def parse_clip_id(text: str) -> ClipRange:
    m = _CLIP_ID.fullmatch(text)
    if m is None or int(m.group(2)) > int(m.group(3)):
        raise ValueError(f"{text[:80]!r} is not a clip id")
    return ClipRange(m.group(1), int(m.group(2)), int(m.group(3)))


@dataclass(frozen=True, slots=True)
class SourceSegment:
    msn: int
    sha256: str
    duration: float
    discontinuity: bool = False


def source_segments(
    document: dict[str, Any], discontinuities: frozenset[int] = frozenset()
) -> list[SourceSegment]:
    """The segments of a (trusted, server-made) provenance document."""
    return [
        SourceSegment(s["msn"], s["sha256"], s["duration"], s["msn"] in discontinuities)
        for s in document["segments"]
    ]


def select(space_id: str, segments: Sequence[SourceSegment], start: float, end: float) -> ClipRange:
    """Every segment that overlaps [start, end) seconds from the start of the replay."""
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise ValueError("'from' and 'to' must be seconds with 0 <= from < to")
    if not segments:
        raise ValueError("the replay has no segments")
    offset, first, last = 0.0, None, None
    for seg in segments:
        if offset < end and offset + seg.duration > start:
            first = seg.msn if first is None else first
            last = seg.msn
        offset += seg.duration
    if first is None or last is None:
        raise ValueError(f"'from' is past the end of the replay ({offset:.3f} s)")
    return ClipRange(space_id, first, last)


def _within(clip: ClipRange, segments: Sequence[SourceSegment]) -> list[SourceSegment]:
    chosen = [s for s in segments if clip.first <= s.msn <= clip.last]
    if not chosen or chosen[0].msn != clip.first or chosen[-1].msn != clip.last:
        raise ValueError(f"segments {clip.first}–{clip.last} are not in the replay")
    return chosen


def live_path(space_id: str, name: str) -> str:
    return f"/live/{space_id}/{name}"


def playlist(clip: ClipRange, segments: Sequence[SourceSegment]) -> str:
    """A VOD playlist of the source's own segment URLs: caches serve clip and replay alike."""
    chosen = _within(clip, segments)
    longest = max(s.duration for s in chosen)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(1, math.floor(longest + 0.5))}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        f"#EXT-X-MEDIA-SEQUENCE:{clip.first}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{live_path(clip.space_id, provenance.INIT_URI)}"',
    ]
    for i, seg in enumerate(chosen):
        if seg.discontinuity and i:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXTINF:{seg.duration:.5f},")
        lines.append(live_path(clip.space_id, provenance.segment_uri(seg.msn)))
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def document(clip: ClipRange, source: dict[str, Any]) -> dict[str, Any]:
    segments = source_segments(source)
    chosen = _within(clip, segments)
    start = sum(s.duration for s in segments if s.msn < clip.first)
    return {
        "version": 1,
        "clip_id": clip.clip_id,
        "source": {
            "space_id": clip.space_id,
            "title": source["title"],
            "provenance": live_path(clip.space_id, provenance.FILE_NAME),
            "playlist": live_path(clip.space_id, "audio.m3u8"),
            "key_id": source["key_id"],
            "chain_head": source["chain_head"],
        },
        "from": start,
        "to": start + sum(s.duration for s in chosen),
        "first_msn": clip.first,
        "last_msn": clip.last,
        "init": {
            "uri": live_path(clip.space_id, provenance.INIT_URI),
            "sha256": source["init"]["sha256"],
        },
        "segments": [
            {
                "msn": s.msn,
                "uri": live_path(clip.space_id, provenance.segment_uri(s.msn)),
                "sha256": s.sha256,
                "duration": s.duration,
            }
            for s in chosen
        ],
    }
