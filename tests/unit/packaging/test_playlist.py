"""playlist.render against golden playlists, and the LL-HLS rules a player relies on."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import m3u8
import pytest

from majlis.packaging.playlist import (
    PartEntry,
    PlaylistView,
    SegmentEntry,
    render,
    render_multivariant,
    rounded_part_target,
    target_duration,
)

DATA = Path(__file__).parents[2] / "data" / "playlists"
PART = 10 * 1024 / 48_000  # 0.213333 s: ten AAC frames
SEGMENT = 5 * PART  # 1.066667 s
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def segments(first: int, count: int, t0: float = T0) -> list[SegmentEntry]:
    return [
        SegmentEntry(msn, SEGMENT, t0 + (msn - first) * SEGMENT)
        for msn in range(first, first + count)
    ]


def parts(msn: int, count: int) -> list[PartEntry]:
    return [PartEntry(msn, i, PART) for i in range(count)]


def live_view() -> PlaylistView:
    """Segments 20-23 complete, parts listed for the last three, two parts of 24 written."""
    listed = [p for msn in (21, 22, 23) for p in parts(msn, 5)] + parts(24, 2)
    return PlaylistView(
        segments=tuple(segments(20, 4)),
        parts=tuple(listed),
        part_target=PART,
        segment_target=SEGMENT,
        ended=False,
        next_msn=24,
        next_part=2,
    )


def ended_view() -> PlaylistView:
    """A finished space: every segment, the last one short (closed after two parts)."""
    done = [*segments(0, 3), SegmentEntry(3, 2 * PART, T0 + 3 * SEGMENT)]
    return PlaylistView(
        segments=tuple(done),
        parts=(),
        part_target=PART,
        segment_target=SEGMENT,
        ended=True,
        next_msn=4,
        next_part=0,
    )


def discontinuity_view() -> PlaylistView:
    """A restart: segments 5-6 from the first run, 7 onward after a 90 s outage."""
    restart = T0 + 2 * SEGMENT + 90.0
    entries = [
        *segments(5, 2),
        SegmentEntry(7, SEGMENT, restart, discontinuity=True),
        SegmentEntry(8, SEGMENT, restart + SEGMENT),
    ]
    return PlaylistView(
        segments=tuple(entries),
        parts=tuple(parts(7, 5) + parts(8, 5)),
        part_target=PART,
        segment_target=SEGMENT,
        ended=False,
        next_msn=9,
        next_part=0,
    )


def long_view() -> PlaylistView:
    """Twelve segments (12.8 s) with a restart in the fourth, two parts of the next."""
    entries = [
        SegmentEntry(s.msn, s.duration, s.started_at, discontinuity=s.msn == 33)
        for s in segments(30, 12)
    ]
    listed = [p for msn in (39, 40, 41) for p in parts(msn, 5)] + parts(42, 2)
    return PlaylistView(
        segments=tuple(entries),
        parts=tuple(listed),
        part_target=PART,
        segment_target=SEGMENT,
        ended=False,
        next_msn=42,
        next_part=2,
        discontinuity_sequence=1,
    )


GOLDEN = {
    "live.m3u8": (live_view, False),
    "ended.m3u8": (ended_view, False),
    "discontinuity.m3u8": (discontinuity_view, False),
    # The delta update of long_view: the segments that start more than 6 s before the end.
    "delta.m3u8": (long_view, True),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_render_matches_golden(name: str) -> None:
    expected = (DATA / name).read_text(encoding="utf-8")
    view, skip = GOLDEN[name]
    assert render(view(), skip=skip) == expected


def test_a_delta_update_keeps_the_end_and_the_numbering() -> None:
    full = m3u8.loads(render(long_view()))
    delta_text = render(long_view(), skip=True)
    # 12 segments of 1.0667 s: the first six start more than 6 s before the end.
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n" in delta_text
    assert "CAN-SKIP-UNTIL=6.0" in delta_text
    delta = m3u8.loads(delta_text)
    assert delta.media_sequence == full.media_sequence == 30
    assert delta.discontinuity_sequence == full.discontinuity_sequence
    kept = [s.uri for s in delta.segments if s.uri]
    assert kept == [s.uri for s in full.segments if s.uri][6:]
    # The discontinuity was among the skipped segments: the parts after it keep their run.
    assert 'URI="p/2/42.0.m4s"' in delta_text and 'URI="p/2/42.0.m4s"' in render(long_view())
    # Short live playlists and the replay are never cut.
    assert "#EXT-X-SKIP" not in render(live_view(), skip=True)
    assert "#EXT-X-SKIP" not in render(ended_view(), skip=True)


def test_live_playlist_parses_with_parts_preload_hint_and_server_control() -> None:
    playlist = m3u8.loads(render(live_view()))
    assert playlist.version == 9
    assert playlist.media_sequence == 20
    assert playlist.target_duration == 1
    assert not playlist.is_endlist
    assert playlist.server_control.can_block_reload == "YES"
    assert playlist.server_control.part_hold_back == pytest.approx(0.642)
    assert playlist.part_inf.part_target == pytest.approx(0.214)
    assert playlist.preload_hint.hint_type == "PART"
    assert playlist.preload_hint.uri == "p/24.2.m4s"
    complete = [s for s in playlist.segments if s.uri]
    assert [s.uri for s in complete] == [f"s/{m}.m4s" for m in range(20, 24)]
    assert [len(s.parts) for s in complete] == [0, 5, 5, 5]
    assert complete[1].parts[0].uri == "p/21.0.m4s"
    assert all(p.independent == "YES" for s in complete for p in s.parts)
    # The segment in progress: its parts are listed, it has no URI yet.
    in_progress = [p.uri for s in playlist.segments if not s.uri for p in s.parts]
    assert in_progress == ["p/24.0.m4s", "p/24.1.m4s"]
    assert playlist.segments[0].init_section.uri == "init.mp4"
    pdt = complete[0].program_date_time
    assert pdt is not None and pdt.timestamp() == T0


def test_ended_playlist_parses_as_vod() -> None:
    playlist = m3u8.loads(render(ended_view()))
    assert playlist.is_endlist
    assert playlist.playlist_type == "vod"
    assert playlist.preload_hint is None
    assert playlist.server_control is None or playlist.server_control.can_block_reload is None
    assert [s.uri for s in playlist.segments] == [f"s/{m}.m4s" for m in range(4)]
    assert [s.duration for s in playlist.segments] == pytest.approx(
        [SEGMENT] * 3 + [2 * PART], abs=1e-5
    )
    assert all(not s.parts for s in playlist.segments)


def test_discontinuity_parses() -> None:
    playlist = m3u8.loads(render(discontinuity_view()))
    complete = [s for s in playlist.segments if s.uri]
    assert [s.discontinuity for s in complete] == [False, False, True, False]
    gap = complete[2].program_date_time - complete[1].program_date_time
    assert gap.total_seconds() == pytest.approx(SEGMENT + 90.0, abs=1e-3)


def test_discontinuity_sequence_is_announced_once_discontinuities_leave() -> None:
    view = replace(discontinuity_view(), segments=discontinuity_view().segments[3:])
    text = render(replace(view, discontinuity_sequence=2))
    assert "#EXT-X-MEDIA-SEQUENCE:8\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n" in text
    assert m3u8.loads(text).discontinuity_sequence == 2
    assert "DISCONTINUITY-SEQUENCE" not in render(view)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(PART, 0.214), (0.2, 0.2), (0.5, 0.5), (3 * 1024 / 48_000, 0.064), (0.2001, 0.201)],
)
def test_part_target_is_rounded_up_to_the_millisecond(duration: float, expected: float) -> None:
    assert rounded_part_target(duration) == pytest.approx(expected, abs=1e-12)
    assert rounded_part_target(duration) >= duration


def test_every_part_fits_the_advertised_part_target() -> None:
    text = render(live_view())
    target = float(re.search(r"PART-TARGET=([\d.]+)", text).group(1))  # type: ignore[union-attr]
    durations = [float(d) for d in re.findall(r"#EXT-X-PART:DURATION=([\d.]+)", text)]
    assert durations and all(d <= target for d in durations)
    hold_back = float(re.search(r"PART-HOLD-BACK=([\d.]+)", text).group(1))  # type: ignore[union-attr]
    # RFC 8216bis 4.4.3.8: PART-HOLD-BACK at least twice the part target.
    assert hold_back >= 2 * target


def _view_with(durations: list[float], segment_target: float = SEGMENT) -> PlaylistView:
    entries = tuple(SegmentEntry(i, d, T0 + i) for i, d in enumerate(durations))
    return PlaylistView(entries, (), PART, segment_target, True, len(durations), 0)


@pytest.mark.parametrize(
    "durations",
    [
        [SEGMENT] * 4,
        [SEGMENT, 2 * PART],
        [1.4, 1.0],
        [1.5, 1.0],
        [2.5, 2.0],  # a tie: "rounded to the nearest integer" must not round it down to 2
        [2.4999999, 1.0],  # printed as 2.50000, which is what a player rounds
        [6.0, 0.3],
        [0.2],
    ],
)
def test_every_extinf_rounded_fits_the_target_duration(durations: list[float]) -> None:
    # RFC 8216bis 4.4.3.1: each EXTINF, rounded to the nearest integer, <= TARGETDURATION.
    text = render(_view_with(durations))
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))  # type: ignore[union-attr]
    assert target == target_duration(_view_with(durations))
    for printed in re.findall(r"#EXTINF:([\d.]+),", text):
        assert math.floor(float(printed) + 0.5) <= target, (printed, target)
    assert target >= 1


def test_target_duration_is_not_inflated() -> None:
    assert target_duration(_view_with([SEGMENT] * 3)) == 1
    assert target_duration(_view_with([2.2, 2.2], segment_target=2.2)) == 2
    # An empty live playlist still announces the configured segment length.
    empty = PlaylistView((), (), PART, 4.0, False, 0, 0)
    assert target_duration(empty) == 4


def test_empty_live_playlist_hints_the_first_part() -> None:
    text = render(PlaylistView((), (), PART, SEGMENT, False, 0, 0))
    playlist = m3u8.loads(text)
    assert playlist.media_sequence == 0
    assert playlist.preload_hint.uri == "p/0.0.m4s"
    assert "#EXTINF" not in text


def test_multivariant_announces_aac_lc() -> None:
    text = render_multivariant("live.m3u8", 48_000)
    playlist = m3u8.loads(text)
    assert playlist.is_variant
    (variant,) = playlist.playlists
    assert variant.uri == "live.m3u8"
    assert variant.stream_info.codecs == "mp4a.40.2"
    assert variant.stream_info.bandwidth >= 48_000
