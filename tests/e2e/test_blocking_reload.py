"""LL-HLS blocking playlist reload and preload hints over real HTTP (RFC 8216bis 6.2.5.2).

A live space with one tone publisher; a player-like client asks for parts and segments
that do not exist yet and measures how long the server holds each request.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.support.server import RunningServer, majlis_server, stop
from tests.support.whip import ToneTrack, publish

pytestmark = pytest.mark.asyncio(loop_scope="module")

PART_S = 10 * 1024 / 48_000  # the default part: 10 AAC frames = 213.3 ms
# Answered when the part exists (within a part, plus a loaded machine's lateness), far
# sooner than the 3 s hold timeout.
LATE_S = 1.0
SEGMENT_S = 5 * PART_S
HOLD_LIMIT_S = 3.0  # three target durations of 1 s
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_SEGMENT = re.compile(r"^s/(\d+)\.m4s$", re.M)
# After a restart part URIs carry the run: p/<run>/<msn>.<index>.m4s.
_PART = re.compile(r'#EXT-X-PART:DURATION=[\d.]+,URI="p/(?:\d+/)?(\d+)\.(\d+)\.m4s"')
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(p/(?:\d+/)?(\d+)\.(\d+)\.m4s)"')


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    held: float  # seconds from sending the request to the end of the body

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Edge:
    """Where a playlist says the live edge is."""

    last_segment: int  # last complete segment (-1: none yet)
    hint: tuple[int, int]  # the preload-hinted part
    parts: set[tuple[int, int]]
    hint_uri: str = ""

    @classmethod
    def of(cls, text: str) -> Edge:
        segments = [int(m) for m in _SEGMENT.findall(text)]
        hint = _HINT.search(text)
        assert hint is not None, text
        parts = {(int(a), int(b)) for a, b in _PART.findall(text)}
        return cls(max(segments, default=-1), (int(hint[2]), int(hint[3])), parts, hint[1])


async def fetch(http: aiohttp.ClientSession, url: str, **params: str | int) -> Reply:
    start = time.perf_counter()
    query = {k: str(v) for k, v in params.items()}
    async with http.get(url, params=query) as resp:
        body = await resp.read()
    return Reply(resp.status, body, dict(resp.headers), time.perf_counter() - start)


@dataclass
class Live:
    server: RunningServer
    http: aiohttp.ClientSession
    space: dict[str, str]

    @property
    def playlist(self) -> str:
        return self.server.base + self.space["playlist_url"]

    def media(self, uri: str) -> str:
        return self.playlist.rsplit("/", 1)[0] + "/" + uri

    async def edge(self) -> Edge:
        reply = await fetch(self.http, self.playlist)
        assert reply.status == 200, reply.body
        return Edge.of(reply.text)

    async def just_after_segment(self) -> Edge:
        """Block until the next segment completes: the edge then stays put for ~1 s."""
        edge = await self.edge()
        reply = await fetch(self.http, self.playlist, _HLS_msn=edge.last_segment + 1)
        assert reply.status == 200, reply.body
        return Edge.of(reply.text)


async def _wait_segments(live: Live, count: int) -> None:
    deadline = time.monotonic() + 15
    while (edge := await live.edge()).last_segment + 1 < count:
        assert time.monotonic() < deadline, f"only {edge.last_segment + 1} segments"
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    with majlis_server(tmp_path_factory.mktemp("blocking") / "data") as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            space = server.create_space("Blocking reload")
            pub = await publish(
                http, server.base, space["whip_url"], space["speaker_token"], ToneTrack(500.0)
            )
            try:
                lv = Live(server, http, space)
                await _wait_segments(lv, 2)
                yield lv
            finally:
                await pub.pc.close()


def _error(reply: Reply, status: int, fragment: str) -> None:
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.headers["Content-Type"].startswith("application/json")
    body = json.loads(reply.body)
    assert body["status"] == status and fragment in body["detail"], body


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"_HLS_msn": "abc"}, "_HLS_msn must be a non-negative decimal integer"),
        ({"_HLS_msn": "-1"}, "_HLS_msn must be a non-negative decimal integer"),
        ({"_HLS_msn": "1.5"}, "_HLS_msn must be a non-negative decimal integer"),
        ({"_HLS_msn": ""}, "_HLS_msn must be a non-negative decimal integer"),
        ({"_HLS_msn": "+1"}, "_HLS_msn must be a non-negative decimal integer"),
        ({"_HLS_msn": "0x1"}, "_HLS_msn must be a non-negative decimal integer"),
        ({"_HLS_msn": "9" * 40}, "_HLS_msn must be a non-negative decimal integer"),
        # Unicode digits are not HLS decimal-integers ([0-9]+); "²" once reached int().
        ({"_HLS_msn": "²"}, "_HLS_msn must be a non-negative decimal integer"),
        ({"_HLS_msn": "٣"}, "_HLS_msn must be a non-negative decimal integer"),
        ({"_HLS_msn": "1", "_HLS_part": "-1"}, "_HLS_part must be a non-negative"),
        ({"_HLS_msn": "1", "_HLS_part": "x"}, "_HLS_part must be a non-negative"),
        ({"_HLS_msn": "1", "_HLS_part": "²"}, "_HLS_part must be a non-negative"),
        ({"_HLS_part": "0"}, "_HLS_part requires _HLS_msn"),
        ({"_HLS_skip": "NO"}, "_HLS_skip must be YES or v2"),
        ({"_HLS_msn": "999999"}, "is too far ahead"),
    ],
)
async def test_malformed_blocking_parameters(
    live: Live, params: dict[str, str], fragment: str
) -> None:
    reply = await fetch(live.http, live.playlist, **params)
    _error(reply, 400, fragment)
    assert reply.held < 1.0, "a malformed request is refused at once, not held"


async def test_too_far_ahead_is_refused_at_once(live: Live) -> None:
    # RFC 8216bis 6.2.5.2: 400 if _HLS_msn > last + 2 (last = last complete segment).
    edge = await live.just_after_segment()
    reply = await fetch(live.http, live.playlist, _HLS_msn=edge.last_segment + 3)
    _error(reply, 400, "too far ahead")
    assert reply.held < 0.3
    # More than 3 parts past the last part, within an allowed segment.
    msn, part = edge.hint
    ahead = await fetch(live.http, live.playlist, _HLS_msn=msn, _HLS_part=part + 3)
    _error(ahead, 400, "more than 3 parts ahead")


async def test_two_segments_ahead_is_held_until_it_exists(live: Live) -> None:
    edge = await live.just_after_segment()
    wanted = edge.last_segment + 2
    reply = await fetch(live.http, live.playlist, _HLS_msn=wanted)
    assert reply.status == 200, reply.body
    assert wanted in {int(m) for m in _SEGMENT.findall(reply.text)}
    # Two segments (2.13 s) less the time since the last one closed, within the hold limit.
    assert 1.5 < reply.held < HOLD_LIMIT_S, f"held {reply.held:.3f} s"
    print(f"_HLS_msn=last+2 held {reply.held:.3f} s")


async def test_next_part_is_answered_as_soon_as_it_exists(live: Live) -> None:
    holds = []
    for _ in range(6):
        edge = await live.edge()
        msn, part = edge.hint
        assert (msn, part) not in edge.parts
        reply = await fetch(live.http, live.playlist, _HLS_msn=msn, _HLS_part=part)
        assert reply.status == 200, reply.body
        assert (msn, part) in Edge.of(reply.text).parts, "the answer must list the part"
        holds.append(reply.held)
    print("next-part holds (s):", " ".join(f"{h:.3f}" for h in holds))
    assert max(holds) < PART_S + LATE_S, holds
    # Held, not answered at once: on average about half a part.
    assert sum(holds) / len(holds) > 0.03, holds


async def test_preload_hint_is_held_then_served_with_the_part(live: Live) -> None:
    holds = []
    for _ in range(4):
        msn, part = (await live.edge()).hint
        uri = f"p/{msn}.{part}.m4s"
        hinted = await fetch(live.http, live.media(uri))
        assert hinted.status == 200, hinted.body[:200]
        assert hinted.headers["Content-Type"] == "audio/mp4"
        assert hinted.body[4:8] == b"moof", "a part is one moof + mdat"
        holds.append(hinted.held)
        again = await fetch(live.http, live.media(uri))
        assert again.body == hinted.body, "a part never changes once written"
    print("preload-hint holds (s):", " ".join(f"{h:.3f}" for h in holds))
    assert max(holds) < PART_S + LATE_S, holds


def _max_age(headers: dict[str, str]) -> int:
    match = re.search(r"max-age=(\d+)", headers["Cache-Control"])
    assert match, headers["Cache-Control"]
    return int(match[1])


async def test_content_types_caching_and_cors(live: Live) -> None:
    edge = await live.just_after_segment()
    msn, part = edge.hint
    playlist = await fetch(live.http, live.playlist)
    blocking = await fetch(live.http, live.playlist, _HLS_msn=msn, _HLS_part=part)
    multivariant = await fetch(live.http, live.server.base + live.space["multivariant_url"])
    for reply in (playlist, blocking, multivariant):
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith(PLAYLIST_TYPE), reply.headers
        assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert _max_age(playlist.headers) <= 1, "a live playlist changes every part"
    assert "immutable" not in blocking.headers["Cache-Control"]
    assert _max_age(blocking.headers) <= 6
    assert multivariant.text.startswith("#EXTM3U")

    media = {
        "init": await fetch(live.http, live.media("init.mp4")),
        "part": await fetch(live.http, live.media(f"p/{edge.last_segment}.0.m4s")),
        "segment": await fetch(live.http, live.media(f"s/{edge.last_segment}.m4s")),
    }
    for what, reply in media.items():
        assert reply.status == 200, (what, reply.body[:200])
        assert reply.headers["Content-Type"] == "audio/mp4", (what, reply.headers)
        assert "immutable" in reply.headers["Cache-Control"], (what, reply.headers)
        assert _max_age(reply.headers) >= 86_400, what
        assert reply.headers["Access-Control-Allow-Origin"] == "*", what
    assert media["init"].body[4:8] == b"ftyp"
    # The segment is its parts joined, byte for byte.
    parts = [await fetch(live.http, live.media(f"p/{edge.last_segment}.{i}.m4s")) for i in range(5)]
    assert b"".join(p.body for p in parts) == media["segment"].body

    state = await fetch(live.http, live.server.base + live.space["state_url"])
    assert state.headers["Access-Control-Allow-Origin"] == "*"
    assert _max_age(state.headers) <= 1


async def test_a_stalled_live_edge_answers_503(tmp_path: Path) -> None:
    """A space restored live after a restart has no pipeline until someone publishes: its
    edge does not move, so a blocking request for the next part can only time out."""
    data = tmp_path / "data"
    with majlis_server(data) as first:
        space = first.create_space("Stalls after restart")
        async with aiohttp.ClientSession() as http:
            pub = await publish(
                http, first.base, space["whip_url"], space["host_token"], ToneTrack(300.0)
            )
            await _wait_segments(Live(first, http, space), 2)
            await pub.pc.close()
        assert stop(first.process) == 0, first.log()

    with majlis_server(data) as second:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            lv = Live(second, http, space)
            state = await fetch(http, second.base + space["state_url"])
            assert b'"status":"live"' in state.body, state.body
            edge = await lv.edge()
            msn, part = edge.hint
            done = await fetch(http, lv.playlist, _HLS_msn=edge.last_segment)
            assert done.status == 200 and done.held < 0.3, "an existing segment is not held"
            next_part, next_segment, hinted = await asyncio.gather(
                fetch(http, lv.playlist, _HLS_msn=msn, _HLS_part=part),
                fetch(http, lv.playlist, _HLS_msn=msn),
                fetch(http, lv.media(edge.hint_uri)),
            )
            for reply in (next_part, next_segment):
                _error(reply, 503, "did not appear in time")
                assert int(reply.headers["Retry-After"]) >= 1
                assert HOLD_LIMIT_S - 0.1 < reply.held < HOLD_LIMIT_S + 1.0, reply.held
            print(f"stalled edge: 503 after {next_part.held:.3f} s / {next_segment.held:.3f} s")
            # The hinted part never came: held as long, then not found.
            _error(hinted, 404, f"part {msn}.{part} does not exist")
            assert HOLD_LIMIT_S - 0.1 < hinted.held < HOLD_LIMIT_S + 1.0, hinted.held

            # Once ended, nothing is awaited any more: every blocking request returns at once.
            async with http.post(
                f"{second.base}/api/spaces/{space['id']}/end",
                headers={"Authorization": f"Bearer {space['host_token']}"},
            ) as resp:
                assert resp.status == 200
            ended = await fetch(http, lv.playlist, _HLS_msn=msn + 50, _HLS_part=0)
            assert ended.status == 200 and ended.held < 0.5, (ended.status, ended.held)
            assert ended.text.rstrip().endswith("#EXT-X-ENDLIST")
            assert "PRELOAD-HINT" not in ended.text and "#EXT-X-PART:" not in ended.text
            assert _max_age(ended.headers) >= 60


async def test_delta_update_leaves_out_what_the_player_already_has(live: Live) -> None:
    """_HLS_skip=YES (hls.js asks for it once it has the full playlist): the oldest segments
    become one EXT-X-SKIP line, the rest is the full playlist's, blocking included."""
    await _wait_segments(live, 9)  # more than CAN-SKIP-UNTIL (6 s) plus a segment
    edge = await live.just_after_segment()
    full = await fetch(live.http, live.playlist, _HLS_msn=edge.last_segment)
    delta = await fetch(live.http, live.playlist, _HLS_msn=edge.last_segment, _HLS_skip="YES")
    assert full.status == delta.status == 200
    skipped = re.search(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)\n", delta.text)
    assert skipped is not None and "#EXT-X-SKIP" not in full.text, delta.text
    assert "CAN-SKIP-UNTIL=6.0" in full.text
    full_uris = _SEGMENT.findall(full.text)
    delta_uris = _SEGMENT.findall(delta.text)
    assert delta_uris == full_uris[int(skipped[1]) :]
    assert len(delta.body) < len(full.body)
    kept = sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", delta.text))
    assert kept >= 6.0, "the update covers the whole skip boundary"
    # Same media sequence: the player places what is left after what it has.
    sequence = re.compile(r"#EXT-X-MEDIA-SEQUENCE:(\d+)")
    assert sequence.findall(delta.text) == sequence.findall(full.text)
    # A blocking delta request is held like any other.
    held = await fetch(live.http, live.playlist, _HLS_msn=edge.last_segment + 1, _HLS_skip="YES")
    assert held.status == 200 and held.held > 0.3 and "#EXT-X-SKIP" in held.text
