"""The live edge of one space: recent parts in memory, the playlist, and blocking reloads.

Runs on the event loop. Parts become visible the moment they arrive; a segment's EXTINF only
after the recording has fsync'd it, so whatever a playlist announced survives a crash.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass

from majlis.errors import BadRequest, Unavailable
from majlis.packaging.playlist import PartEntry, PlaylistView, SegmentEntry, render

# RFC 8216bis 6.2.5.2: a client may ask for at most this many parts past the last one.
ADVANCE_PART_LIMIT = 3
# Segments whose parts stay in memory (older parts are cut from the segment on disk).
PARTS_IN_MEMORY_SEGMENTS = 6


@dataclass(frozen=True, slots=True)
class BlockingRequest:
    msn: int
    part: int | None


def parse_blocking(query: dict[str, str]) -> BlockingRequest | None:
    """Parse `_HLS_msn` / `_HLS_part` / `_HLS_skip`; raise BadRequest on anything malformed."""
    msn_text = query.get("_HLS_msn")
    part_text = query.get("_HLS_part")
    skip = query.get("_HLS_skip")
    if skip is not None and skip not in ("YES", "v2"):
        raise BadRequest("_HLS_skip must be YES or v2")
    if msn_text is None:
        if part_text is not None:
            raise BadRequest("_HLS_part requires _HLS_msn")
        return None
    msn = _parse_index("_HLS_msn", msn_text)
    part = _parse_index("_HLS_part", part_text) if part_text is not None else None
    return BlockingRequest(msn, part)


def _parse_index(name: str, text: str) -> int:
    # isdigit() alone admits "²" (int() refuses it) and "٣"; HLS integers are [0-9]+.
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise BadRequest(f"{name} must be a non-negative decimal integer, got {text[:32]!r}")
    return int(text)


class LiveEdge:
    def __init__(
        self,
        *,
        part_duration: float,
        segment_parts: int,
        live_window: int,
    ) -> None:
        self.part_duration = part_duration
        self.segment_parts = segment_parts
        self.live_window = live_window
        self.init: bytes | None = None
        self.segments: list[SegmentEntry] = []
        self.ended = False
        self._parts: dict[tuple[int, int], bytes] = {}
        self._part_entries: list[PartEntry] = []
        self._next_msn = 0
        self._next_part = 0
        self._pending_start: float | None = None
        self._pending_discontinuity = False
        # Numbers of the segments that follow a discontinuity, in order: which run a part
        # belongs to (see playlist.part_uri).
        self._discontinuities: list[int] = []
        # Requests held until the edge reaches them, one event per distinct request: a
        # herd of thousands of players asking for the same next part shares one event and
        # is woken once, when that part exists, not at every change.
        self._waiters: dict[BlockingRequest, asyncio.Event] = {}
        # The playlist as served, rendered once per change: every woken waiter sends the
        # same bytes.
        self._rendered: bytes | None = None
        self._rendered_delta: bytes | None = None

    # -- writing (called by the pipeline consumer, in order) --------------------------------

    def set_init(self, data: bytes) -> None:
        self.init = data

    def resume_after(self, segments: list[SegmentEntry]) -> None:
        """Continue numbering after recorded segments (restart), marking a discontinuity."""
        self.segments = list(segments)
        self._discontinuities = [s.msn for s in segments if s.discontinuity]
        self._next_msn = segments[-1].msn + 1 if segments else 0
        self._pending_discontinuity = bool(segments)
        self._notify()

    def add_part(
        self, msn: int, index: int, data: bytes, duration: float, started_at: float
    ) -> None:
        if (msn, index) != (self._next_msn, self._next_part):
            raise ValueError(
                f"part {msn}.{index} out of order, expected {self._next_msn}.{self._next_part}"
            )
        if index == 0:
            self._pending_start = started_at
        self._parts[(msn, index)] = data
        self._part_entries.append(PartEntry(msn, index, duration))
        self._next_part += 1
        self._notify()

    def closing_entry(self, msn: int, duration: float) -> SegmentEntry:
        """The entry the segment in progress gets once durable (see `complete_segment`)."""
        if msn != self._next_msn:
            raise ValueError(f"segment {msn} closed out of order, expected {self._next_msn}")
        return SegmentEntry(
            msn=msn,
            duration=duration,
            started_at=self._pending_start or 0.0,
            discontinuity=self._pending_discontinuity,
        )

    def complete_segment(self, entry: SegmentEntry) -> None:
        if entry.msn != self._next_msn:
            raise ValueError(f"segment {entry.msn} completed out of order")
        self.segments.append(entry)
        if entry.discontinuity:
            self._discontinuities.append(entry.msn)
        self._pending_discontinuity = False
        self._next_msn += 1
        self._next_part = 0
        self._forget_old_parts()
        self._notify()

    def pending_parts(self) -> list[bytes]:
        """Bytes of the parts of the segment in progress (to close it at the end)."""
        return [self._parts[(self._next_msn, i)] for i in range(self._next_part)]

    def end(self) -> None:
        self.ended = True
        self._notify()

    def _forget_old_parts(self) -> None:
        oldest_kept = self._next_msn - PARTS_IN_MEMORY_SEGMENTS
        self._part_entries = [p for p in self._part_entries if p.msn >= oldest_kept]
        for key in [k for k in self._parts if k[0] < oldest_kept]:
            del self._parts[key]

    def _notify(self) -> None:
        self._rendered = self._rendered_delta = None
        for req in [r for r in self._waiters if self._satisfied(r)]:
            self._waiters.pop(req).set()

    # -- reading ----------------------------------------------------------------------------

    @property
    def next_msn(self) -> int:
        return self._next_msn

    @property
    def next_part(self) -> int:
        return self._next_part

    def part(self, msn: int, index: int) -> bytes | None:
        return self._parts.get((msn, index))

    def run_of(self, msn: int) -> int:
        """Discontinuities up to segment `msn` (the one in progress and later included)."""
        if msn < self._next_msn:
            return bisect.bisect_right(self._discontinuities, msn)
        return len(self._discontinuities) + self._pending_discontinuity

    def has_part(self, msn: int, index: int) -> bool:
        return (msn, index) in self._parts or (
            msn < self._next_msn and 0 <= index < self.segment_parts
        )

    def view(self) -> PlaylistView:
        if self.ended:
            segments = tuple(self.segments)
            parts: tuple[PartEntry, ...] = ()
        else:
            segments = tuple(self.segments[-self.live_window :])
            edge = self._next_msn - self._listed_part_segments()
            parts = tuple(p for p in self._part_entries if p.msn >= edge)
        left = self.segments[: len(self.segments) - len(segments)]
        return PlaylistView(
            segments=segments,
            parts=parts,
            part_target=self.part_duration,
            segment_target=self.part_duration * self.segment_parts,
            ended=self.ended,
            next_msn=self._next_msn,
            next_part=self._next_part,
            discontinuity_sequence=sum(s.discontinuity for s in left),
            pending_started_at=self._pending_start if self._next_part else None,
            pending_discontinuity=self._pending_discontinuity,
        )

    def _listed_part_segments(self) -> int:
        # Enough whole segments to cover PART_LISTING_TARGETS target durations.
        seg = self.part_duration * self.segment_parts
        return max(1, int(3 * max(1.0, round(seg)) / seg + 0.999))

    def playlist(self) -> str:
        return self.playlist_bytes().decode()

    def playlist_bytes(self, skip: bool = False) -> bytes:
        """`skip`: the delta update a player asks for with _HLS_skip=YES (or v2)."""
        if skip:
            if self._rendered_delta is None:
                self._rendered_delta = render(self.view(), skip=True).encode()
            return self._rendered_delta
        if self._rendered is None:
            self._rendered = render(self.view()).encode()
        return self._rendered

    @property
    def held_requests(self) -> int:
        """Distinct blocking requests waiting now (not the number of clients holding them)."""
        return len(self._waiters)

    # -- blocking reload --------------------------------------------------------------------

    def satisfied(self, req: BlockingRequest) -> bool:
        """Whether a blocking request can be answered now (without being held)."""
        return self._satisfied(req)

    def _satisfied(self, req: BlockingRequest) -> bool:
        if self.ended:
            return True
        if req.part is None:
            return self._next_msn > req.msn
        position = req.msn * self.segment_parts + req.part
        return self._next_msn * self.segment_parts + self._next_part > position

    def check_blocking(self, req: BlockingRequest) -> None:
        if self.ended:
            return
        last_complete = self._next_msn - 1
        if req.msn > last_complete + 2:
            raise BadRequest(
                f"_HLS_msn={req.msn} is too far ahead: the last segment is {last_complete}"
            )
        if req.part is not None:
            last_position = self._next_msn * self.segment_parts + self._next_part - 1
            asked = req.msn * self.segment_parts + req.part
            if asked > last_position + ADVANCE_PART_LIMIT:
                raise BadRequest(
                    f"_HLS_part={req.part} of segment {req.msn} is more than "
                    f"{ADVANCE_PART_LIMIT} parts ahead of the last part"
                )

    async def wait_for(self, req: BlockingRequest, hold: float) -> None:
        self.check_blocking(req)
        if self._satisfied(req):
            return
        event = self._waiters.get(req)
        if event is None:
            event = self._waiters[req] = asyncio.Event()
        try:
            async with asyncio.timeout(hold):
                await event.wait()
        except TimeoutError:
            raise Unavailable("the requested segment or part did not appear in time") from None

    async def wait_for_part(self, msn: int, index: int, hold: float) -> bool:
        """Hold a request for the hinted part until it exists (preload hints)."""
        if index >= self.segment_parts:
            return False
        position = msn * self.segment_parts + index
        current = self._next_msn * self.segment_parts + self._next_part
        if position > current + ADVANCE_PART_LIMIT or self.ended:
            return self.has_part(msn, index)
        try:
            await self.wait_for(BlockingRequest(msn, index), hold)
        except (Unavailable, BadRequest):
            return False
        return self.has_part(msn, index)
