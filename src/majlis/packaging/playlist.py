"""LL-HLS media playlist rendering (RFC 8216bis, Apple Low-Latency HLS). Pure: no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

VERSION = 9
# RFC 8216bis 4.4.3.8: PART-HOLD-BACK must be at least twice the part target; Apple asks
# for three, which gives hls.js room for one late part without stalling.
PART_HOLD_BACK_PARTS = 3
# CAN-SKIP-UNTIL in target durations (RFC 8216bis 4.4.3.8: at least six).
SKIP_TARGETS = 6
# Parts stay listed for segments within this many target durations of the live edge.
PART_LISTING_TARGETS = 3


@dataclass(frozen=True, slots=True)
class PartEntry:
    msn: int
    index: int
    duration: float


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    msn: int
    duration: float
    started_at: float  # wall-clock seconds of the first sample
    discontinuity: bool = False


@dataclass(frozen=True, slots=True)
class PlaylistView:
    """Everything a playlist shows, frozen at one instant."""

    segments: tuple[SegmentEntry, ...]
    # Parts of every listed segment near the edge, plus those of the segment in progress.
    parts: tuple[PartEntry, ...]
    part_target: float
    segment_target: float
    ended: bool
    next_msn: int
    next_part: int
    # Discontinuities that have left the window (RFC 8216bis 4.4.3.3).
    discontinuity_sequence: int = 0
    # The segment in progress: when its first sample was mixed, and whether it follows a
    # discontinuity (a restart). Its parts carry both from the first one, so a player that
    # joins before any segment is complete (or right after a restart) places them on the
    # same timeline as the segment they become.
    pending_started_at: float | None = None
    pending_discontinuity: bool = False


def part_uri(msn: int, index: int, run: int = 0) -> str:
    """`run` counts the discontinuities before the part (restarts, takeovers). After a crash
    the segment that was in progress is lost and its number is used again; its parts were
    announced, and edges keep parts for a year, so the new ones must not share their URIs."""
    return f"p/{msn}.{index}.m4s" if run == 0 else f"p/{run}/{msn}.{index}.m4s"


def segment_uri(msn: int) -> str:
    return f"s/{msn}.m4s"


def _pdt(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rounded_part_target(part_duration: float) -> float:
    # Round up to the millisecond: otherwise every 213.33 ms part counts as over target.
    return math.ceil(part_duration * 1000) / 1000


def _extinf(duration: float) -> str:
    return f"{duration:.5f}"


def target_duration(view: PlaylistView) -> int:
    longest = max((s.duration for s in view.segments), default=view.segment_target)
    # RFC 8216bis 4.4.3.1: every EXTINF, rounded to the nearest integer, <= the target. Round
    # what players read (the printed value) and round ties up: round() would make 2.5 a 2.
    return max(1, math.floor(float(_extinf(max(longest, view.segment_target))) + 0.5))


def skip_until(view: PlaylistView) -> float:
    """CAN-SKIP-UNTIL: the spec's least, six target durations. A player that asks for a
    delta update (_HLS_skip=YES, as hls.js does after its first load) gets the last 6 s of
    segments instead of the whole live window: most of what a blocking reload weighs."""
    return float(SKIP_TARGETS * target_duration(view))


def skippable(view: PlaylistView) -> int:
    """How many of the oldest listed segments a delta update leaves out: those that end at
    least CAN-SKIP-UNTIL before the end of the last one (a segment partly inside the last
    6 s stays, so the update always covers the whole skip boundary)."""
    end = sum(s.duration for s in view.segments)
    finished, count, limit = 0.0, 0, skip_until(view)
    for seg in view.segments:
        finished += seg.duration
        if end - finished < limit - 1e-6:
            break
        count += 1
    return count


def render(view: PlaylistView, init_uri: str = "init.mp4", *, skip: bool = False) -> str:
    """The media playlist; `skip` renders the delta update (RFC 8216bis 6.2.5.1), which
    the ended playlist never is."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}"]
    lines.append(f"#EXT-X-TARGETDURATION:{target_duration(view)}")
    first_msn = view.segments[0].msn if view.segments else view.next_msn
    skipped = skippable(view) if skip and not view.ended else 0
    if view.ended:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    else:
        part_target = rounded_part_target(view.part_target)
        hold_back = round(part_target * PART_HOLD_BACK_PARTS, 3)
        lines.append(
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until(view):.1f},"
            f"PART-HOLD-BACK={hold_back:.3f}"
        )
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={part_target:.3f}")
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first_msn}")
    if view.discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{view.discontinuity_sequence}")
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
    lines.append(f'#EXT-X-MAP:URI="{init_uri}"')
    parts_by_msn: dict[int, list[PartEntry]] = {}
    for part in view.parts:
        parts_by_msn.setdefault(part.msn, []).append(part)
    run = view.discontinuity_sequence
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    for number, seg in enumerate(view.segments):
        if seg.discontinuity:
            run += 1
        if number < skipped:
            continue
        if seg.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(seg.started_at)}")
        lines.extend(_part_lines(parts_by_msn.get(seg.msn, ()), run))
        lines.append(f"#EXTINF:{_extinf(seg.duration)},")
        lines.append(segment_uri(seg.msn))
    if not view.ended:
        pending = parts_by_msn.get(view.next_msn, ())
        run += view.pending_discontinuity
        if pending and view.pending_discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if pending and view.pending_started_at is not None:
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(view.pending_started_at)}")
        lines.extend(_part_lines(pending, run))
        hint = part_uri(*_next_part(view), run)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{hint}"')
    else:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _next_part(view: PlaylistView) -> tuple[int, int]:
    # Between a segment's last part and its fsync the segment is full but not yet listed:
    # the next part to exist is the first of the next segment, never index segment_parts.
    segment_parts = round(view.segment_target / view.part_target)
    if view.next_part >= segment_parts:
        return view.next_msn + 1, 0
    return view.next_msn, view.next_part


def _part_lines(parts: tuple[PartEntry, ...] | list[PartEntry], run: int) -> list[str]:
    return [
        f'#EXT-X-PART:DURATION={p.duration:.5f},URI="{part_uri(p.msn, p.index, run)}",'
        "INDEPENDENT=YES"
        for p in parts
    ]


def stream_inf(bitrate: int, extra: str = "") -> str:
    """The one rendition's EXT-X-STREAM-INF: the AAC bitrate plus 15 % for the container."""
    return f'#EXT-X-STREAM-INF:BANDWIDTH={int(bitrate * 1.15)},CODECS="mp4a.40.2"{extra}'


def render_multivariant(media_uri: str, bitrate: int) -> str:
    return "\n".join(
        [
            "#EXTM3U",
            f"#EXT-X-VERSION:{VERSION}",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            stream_inf(bitrate),
            media_uri,
            "",
        ]
    )
