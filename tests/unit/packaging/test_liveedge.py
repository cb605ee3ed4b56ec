"""LiveEdge: blocking-reload parsing and waiting, memory of parts, live vs replay listing."""

from __future__ import annotations

import asyncio
import time

import pytest

from majlis.errors import BadRequest, Unavailable
from majlis.packaging.liveedge import (
    ADVANCE_PART_LIMIT,
    PARTS_IN_MEMORY_SEGMENTS,
    BlockingRequest,
    LiveEdge,
    parse_blocking,
)
from majlis.packaging.playlist import SegmentEntry

PART = 10 * 1024 / 48_000
PARTS = 5
T0 = 1_800_000_000.0
# Long enough that a wait that should end early visibly did; short enough for a unit test.
HOLD = 0.2


def make_edge(live_window: int = 30) -> LiveEdge:
    edge = LiveEdge(part_duration=PART, segment_parts=PARTS, live_window=live_window)
    edge.set_init(b"init")
    return edge


def add_part(edge: LiveEdge) -> None:
    """Write the next part; close its segment when it is the last one, as the pipeline does."""
    msn, index = edge.next_msn, edge.next_part
    started = T0 + (msn * PARTS + index) * PART
    edge.add_part(msn, index, f"{msn}.{index}".encode(), PART, started)
    if index == PARTS - 1:
        edge.complete_segment(edge.closing_entry(msn, PART * PARTS))


def add_parts(edge: LiveEdge, count: int) -> None:
    for _ in range(count):
        add_part(edge)


# -- parse_blocking ---------------------------------------------------------------------


def test_no_blocking_parameters() -> None:
    assert parse_blocking({}) is None
    assert parse_blocking({"other": "x"}) is None
    assert parse_blocking({"_HLS_skip": "YES"}) is None


def test_blocking_parameters_parsed() -> None:
    assert parse_blocking({"_HLS_msn": "12"}) == BlockingRequest(12, None)
    assert parse_blocking({"_HLS_msn": "0", "_HLS_part": "3"}) == BlockingRequest(0, 3)
    assert parse_blocking({"_HLS_msn": "7", "_HLS_skip": "v2"}) == BlockingRequest(7, None)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"_HLS_msn": "abc"}, "_HLS_msn must be a non-negative decimal integer, got 'abc'"),
        ({"_HLS_msn": "-1"}, "_HLS_msn must be a non-negative decimal integer, got '-1'"),
        ({"_HLS_msn": "1.5"}, "_HLS_msn must be a non-negative decimal integer, got '1.5'"),
        ({"_HLS_msn": ""}, "_HLS_msn must be a non-negative decimal integer, got ''"),
        ({"_HLS_msn": " 1"}, "_HLS_msn must be a non-negative decimal integer, got ' 1'"),
        (
            {"_HLS_msn": "1234567890123"},
            "_HLS_msn must be a non-negative decimal integer, got '1234567890123'",
        ),
        (
            {"_HLS_msn": "9" * 100},
            f"_HLS_msn must be a non-negative decimal integer, got {'9' * 32!r}",
        ),
        # str.isdigit() admits these; int() refuses the first and HLS allows only [0-9].
        ({"_HLS_msn": "²"}, "_HLS_msn must be a non-negative decimal integer, got '²'"),
        ({"_HLS_msn": "١٢"}, "_HLS_msn must be a non-negative decimal integer, got '١٢'"),
        (
            {"_HLS_msn": "1", "_HLS_part": "x"},
            "_HLS_part must be a non-negative decimal integer, got 'x'",
        ),
        (
            {"_HLS_msn": "1", "_HLS_part": "-2"},
            "_HLS_part must be a non-negative decimal integer, got '-2'",
        ),
        ({"_HLS_part": "1"}, "_HLS_part requires _HLS_msn"),
        ({"_HLS_msn": "1", "_HLS_skip": "NO"}, "_HLS_skip must be YES or v2"),
        ({"_HLS_skip": "yes"}, "_HLS_skip must be YES or v2"),
    ],
)
def test_blocking_parameter_errors(query: dict[str, str], message: str) -> None:
    with pytest.raises(BadRequest) as exc:
        parse_blocking(query)
    assert exc.value.message == message
    assert exc.value.status == 400


# -- writing order ----------------------------------------------------------------------


def test_parts_must_arrive_in_order() -> None:
    edge = make_edge()
    add_parts(edge, 2)
    with pytest.raises(ValueError, match=r"^part 0\.3 out of order, expected 0\.2$"):
        edge.add_part(0, 3, b"x", PART, T0)
    with pytest.raises(ValueError, match=r"^segment 1 closed out of order, expected 0$"):
        edge.closing_entry(1, PART)
    with pytest.raises(ValueError, match=r"^segment 2 completed out of order$"):
        edge.complete_segment(SegmentEntry(2, PART, T0))


def test_segment_entry_takes_the_first_part_start() -> None:
    edge = make_edge()
    add_parts(edge, PARTS + 2)
    (first,) = edge.segments
    assert first.msn == 0
    assert first.started_at == T0
    assert first.duration == pytest.approx(PARTS * PART)
    assert edge.closing_entry(1, 2 * PART).started_at == pytest.approx(T0 + PARTS * PART)
    assert edge.pending_parts() == [b"1.0", b"1.1"]


# -- blocking reload --------------------------------------------------------------------


async def test_wait_returns_at_once_when_already_satisfied() -> None:
    edge = make_edge()
    add_parts(edge, 2 * PARTS + 1)  # segments 0, 1 done; part 2.0 written
    started = time.perf_counter()
    await edge.wait_for(BlockingRequest(1, None), HOLD)
    await edge.wait_for(BlockingRequest(2, 0), HOLD)
    await edge.wait_for(BlockingRequest(0, 4), HOLD)
    assert time.perf_counter() - started < HOLD / 2


async def test_wait_blocks_until_the_part_arrives() -> None:
    edge = make_edge()
    add_parts(edge, 1)
    waiter = asyncio.create_task(edge.wait_for(BlockingRequest(0, 2), hold=5.0))
    await asyncio.sleep(0)
    add_part(edge)  # 0.1: not yet
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not waiter.done(), "returned before the requested part existed"
    add_part(edge)  # 0.2
    await asyncio.wait_for(waiter, 1.0)


async def test_wait_for_a_segment_ends_when_it_completes() -> None:
    edge = make_edge()
    add_parts(edge, PARTS - 1)
    waiter = asyncio.create_task(edge.wait_for(BlockingRequest(0, None), hold=5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    add_part(edge)
    await asyncio.wait_for(waiter, 1.0)


async def test_msn_too_far_ahead_is_a_bad_request() -> None:
    edge = make_edge()
    add_parts(edge, 3 * PARTS)  # last complete segment: 2
    await edge.wait_for(BlockingRequest(2, None), HOLD)
    with pytest.raises(BadRequest) as exc:
        await edge.wait_for(BlockingRequest(5, None), HOLD)
    assert exc.value.message == "_HLS_msn=5 is too far ahead: the last segment is 2"
    # last + 2 is allowed: it is merely held (and here it times out).
    with pytest.raises(Unavailable):
        await edge.wait_for(BlockingRequest(4, None), 0.01)


async def test_part_beyond_the_advance_limit_is_a_bad_request() -> None:
    edge = make_edge()
    add_parts(edge, PARTS + 2)  # last part: 1.1
    with pytest.raises(BadRequest) as exc:
        await edge.wait_for(BlockingRequest(1, 2 + ADVANCE_PART_LIMIT), HOLD)
    assert exc.value.message == (
        f"_HLS_part={2 + ADVANCE_PART_LIMIT} of segment 1 is more than "
        f"{ADVANCE_PART_LIMIT} parts ahead of the last part"
    )
    # Counted across the segment border: 1.1 + 3 parts is 1.4; the next, 2.0, is too far.
    edge.check_blocking(BlockingRequest(1, 4))
    with pytest.raises(BadRequest):
        edge.check_blocking(BlockingRequest(2, 0))
    # A segment boundary crossed legitimately: at 1.4 written, 2.2 is within reach.
    add_parts(edge, 3)
    edge.check_blocking(BlockingRequest(2, 2))


async def test_unavailable_after_the_hold() -> None:
    edge = make_edge()
    add_parts(edge, 1)
    started = time.perf_counter()
    with pytest.raises(Unavailable) as exc:
        await edge.wait_for(BlockingRequest(0, 1), HOLD)
    elapsed = time.perf_counter() - started
    assert exc.value.status == 503
    assert exc.value.message == "the requested segment or part did not appear in time"
    assert HOLD * 0.9 <= elapsed < HOLD + 0.3


async def test_unrelated_parts_do_not_end_the_hold_early() -> None:
    edge = make_edge()
    add_parts(edge, 1)
    waiter = asyncio.create_task(edge.wait_for(BlockingRequest(0, 3), HOLD))
    await asyncio.sleep(0)
    add_part(edge)  # 0.1 arrives, 0.3 is awaited: keep holding
    with pytest.raises(Unavailable):
        await waiter


async def test_ended_space_answers_at_once() -> None:
    edge = make_edge()
    add_parts(edge, 3)
    waiter = asyncio.create_task(edge.wait_for(BlockingRequest(0, 4), hold=5.0))
    await asyncio.sleep(0)
    edge.end()
    await asyncio.wait_for(waiter, 1.0)
    started = time.perf_counter()
    # Once ended, even a far-ahead request is answered at once with the final playlist.
    await edge.wait_for(BlockingRequest(99, 0), hold=5.0)
    assert time.perf_counter() - started < 0.1


async def test_wait_for_part_serves_preload_hints() -> None:
    edge = make_edge()
    add_parts(edge, 1)
    waiter = asyncio.create_task(edge.wait_for_part(0, 1, hold=5.0))
    await asyncio.sleep(0)
    add_part(edge)
    assert await asyncio.wait_for(waiter, 1.0) is True
    assert await edge.wait_for_part(0, PARTS, hold=5.0) is False  # no such index
    assert await edge.wait_for_part(9, 0, hold=5.0) is False  # too far ahead: at once
    assert await edge.wait_for_part(0, 3, hold=0.01) is False  # did not appear in time


# -- memory and listing -----------------------------------------------------------------


async def test_a_herd_on_one_request_shares_one_waiter_and_wakes_once() -> None:
    edge = make_edge()
    add_parts(edge, 3)
    woken: list[int] = []

    async def player(k: int) -> None:
        await edge.wait_for(BlockingRequest(1, 0), 5.0)  # the first part of segment 1
        woken.append(k)

    herd = [asyncio.create_task(player(k)) for k in range(500)]
    await asyncio.sleep(0)
    assert edge.held_requests == 1
    add_parts(edge, 2)  # 0.3, then 0.4 closes segment 0: nobody is woken
    await asyncio.sleep(0)
    assert woken == [] and edge.held_requests == 1
    add_parts(edge, 1)  # 1.0 arrives
    await asyncio.wait_for(asyncio.gather(*herd), 1.0)
    assert sorted(woken) == list(range(500)) and edge.held_requests == 0


async def test_a_timed_out_waiter_leaves_the_others_waiting() -> None:
    edge = make_edge()
    add_parts(edge, 1)
    req = BlockingRequest(0, 2)
    patient = asyncio.create_task(edge.wait_for(req, 5.0))
    with pytest.raises(Unavailable):
        await edge.wait_for(req, 0.05)
    assert not patient.done()
    add_parts(edge, 2)
    await asyncio.wait_for(patient, 1.0)


def test_playlist_is_rendered_once_per_change() -> None:
    edge = make_edge()
    add_parts(edge, 3)
    first = edge.playlist_bytes()
    assert edge.playlist_bytes() is first and edge.playlist() == first.decode()
    add_part(edge)
    changed = edge.playlist_bytes()
    listed = b'#EXT-X-PART:DURATION=0.21333,URI="p/0.3.m4s"'
    assert changed is not first and listed in changed and listed not in first
    edge.end()
    assert b"#EXT-X-ENDLIST" in edge.playlist_bytes()


def test_parts_older_than_the_memory_window_are_forgotten() -> None:
    edge = make_edge()
    add_parts(edge, (PARTS_IN_MEMORY_SEGMENTS + 2) * PARTS + 1)
    oldest_kept = edge.next_msn - PARTS_IN_MEMORY_SEGMENTS
    assert edge.part(oldest_kept - 1, 0) is None
    assert edge.part(0, 0) is None
    assert edge.part(oldest_kept, 0) == f"{oldest_kept}.0".encode()
    assert edge.part(edge.next_msn, 0) is not None
    # Forgotten parts of complete segments still exist (cut from the recording on disk).
    assert edge.has_part(0, 0)
    assert edge.has_part(0, PARTS - 1)
    assert not edge.has_part(0, PARTS)
    assert not edge.has_part(edge.next_msn, 1)
    listed = {p.msn for p in edge.view().parts}
    assert min(listed) >= oldest_kept


def test_live_playlist_lists_a_window_and_parts_near_the_edge() -> None:
    edge = make_edge(live_window=4)
    add_parts(edge, 10 * PARTS + 2)
    view = edge.view()
    assert [s.msn for s in view.segments] == [6, 7, 8, 9]
    # Parts for the segments within three target durations (3 s / 1.067 s: 3 segments).
    assert sorted({p.msn for p in view.parts}) == [7, 8, 9, 10]
    assert [(p.msn, p.index) for p in view.parts if p.msn == 10] == [(10, 0), (10, 1)]
    assert (view.next_msn, view.next_part) == (10, 2)
    text = edge.playlist()
    assert "#EXT-X-MEDIA-SEQUENCE:6\n" in text
    assert text.endswith('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p/10.2.m4s"\n')


def test_ended_playlist_replays_every_segment() -> None:
    edge = make_edge(live_window=4)
    add_parts(edge, 10 * PARTS)
    edge.end()
    view = edge.view()
    assert [s.msn for s in view.segments] == list(range(10))
    assert view.parts == ()
    text = edge.playlist()
    assert "#EXT-X-MEDIA-SEQUENCE:0\n" in text
    assert text.endswith("#EXT-X-ENDLIST\n")
    assert "PRELOAD-HINT" not in text


def test_parts_of_the_first_segment_carry_its_date_before_it_completes() -> None:
    edge = make_edge()
    add_parts(edge, 2)
    text = edge.playlist()
    first_part = text.index('URI="p/0.0.m4s"')
    date = text.index("#EXT-X-PROGRAM-DATE-TIME:")
    assert date < first_part and "EXTINF" not in text
    stamp = text[date:].split("\n", 1)[0]
    add_parts(edge, 3)  # the segment completes: listed with the same date
    assert edge.playlist().count(stamp) == 1


def test_parts_after_a_restart_are_marked_before_their_segment_completes() -> None:
    edge = make_edge()
    edge.resume_after([SegmentEntry(msn=4, duration=PART * PARTS, started_at=T0)])
    edge.set_init(b"init")
    add_parts(edge, 2)
    text = edge.playlist()
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert text.index("#EXT-X-DISCONTINUITY\n") < text.index('URI="p/5.0.m4s"')
    add_parts(edge, 3)
    assert edge.playlist().count("#EXT-X-DISCONTINUITY\n") == 1


def test_resume_after_a_restart_marks_a_discontinuity() -> None:
    edge = make_edge()
    recorded = [SegmentEntry(m, PART * PARTS, T0 + m) for m in range(3)]
    edge.resume_after(recorded)
    assert edge.next_msn == 3
    add_parts(edge, 2 * PARTS)
    assert [s.discontinuity for s in edge.segments] == [False, False, False, True, False]
    assert edge.playlist().count("#EXT-X-DISCONTINUITY\n") == 1


def test_discontinuity_sequence_counts_discontinuities_that_left_the_window() -> None:
    # RFC 8216bis 6.2.2: a server must not drop a segment carrying a discontinuity tag
    # without counting it in EXT-X-DISCONTINUITY-SEQUENCE, or players lose the timeline.
    edge = make_edge(live_window=3)
    edge.resume_after([SegmentEntry(m, PART * PARTS, T0 + m) for m in range(3)])
    add_parts(edge, 2 * PARTS)  # segments 3 (discontinuity) and 4; the window shows 2-4
    text = edge.playlist()
    assert "#EXT-X-DISCONTINUITY\n" in text
    assert "DISCONTINUITY-SEQUENCE" not in text
    add_parts(edge, 3 * PARTS)  # segments 5-7; the window shows 5-7
    text = edge.playlist()
    assert "#EXT-X-DISCONTINUITY\n" not in text
    assert "#EXT-X-MEDIA-SEQUENCE:5\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in text
    # The replay lists everything again: the tag is back, the count is zero.
    edge.end()
    text = edge.playlist()
    assert "#EXT-X-DISCONTINUITY\n" in text
    assert "DISCONTINUITY-SEQUENCE" not in text
