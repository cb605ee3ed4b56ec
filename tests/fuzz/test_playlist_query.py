"""Fuzzing what a listener puts in a URL: blocking-reload parameters, part and segment numbers.

Never a 5xx but the documented 503 when a hold times out; every 400 carries its JSON message;
a request for a playlist too far in the future is refused at once, not held.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from hypothesis import example, given
from hypothesis import strategies as st

from majlis.errors import BadRequest
from majlis.packaging.liveedge import parse_blocking
from tests.fuzz import corpus
from tests.fuzz.client import request
from tests.fuzz.live import LiveSpace
from tests.fuzz.strategies import fuzz, playlist_queries

# RFC 8216bis 6.2.5.2: a hold lasts at most three target durations (1 s here).
HOLD_S = 3.0
# Room for two busy cores on top of a hold.
SLACK_S = 2.0


@fuzz(500)
@given(
    query=st.dictionaries(
        st.sampled_from(["_HLS_msn", "_HLS_part", "_HLS_skip", "other"]),
        st.one_of(st.text(max_size=20), st.integers(-(10**30), 10**30).map(str)),
    )
)
@example(query={"_HLS_msn": "²"})
@example(query={"_HLS_msn": "٣"})
@example(query={"_HLS_msn": "9" * 10_000})
def test_parse_blocking_refuses_only_with_bad_request(query: dict[str, str]) -> None:
    try:
        parsed = parse_blocking(query)
    except BadRequest as exc:
        assert exc.message and len(exc.message) < 200, exc.message
    else:
        assert parsed is None or (parsed.msn >= 0 and (parsed.part or 0) >= 0)


def _get(live: LiveSpace, path: str) -> None:
    reply = request(live.base, "GET", path, timeout=HOLD_S + SLACK_S + 5)
    live.check(reply, path, 503)
    assert reply.status in (200, 304, 400, 404, 414, 503), (reply.status, path)
    assert reply.elapsed < HOLD_S + SLACK_S, f"{path} held {reply.elapsed:.1f} s"
    if reply.status == 503:
        # The only 5xx allowed: a hold that timed out, which says when to come back.
        assert "retry-after" in reply.headers, reply.headers


def test_playlist_corpus_queries(live: LiveSpace) -> None:
    mark, started = live.log_mark(), time.perf_counter()
    for query in corpus.queries():
        _get(live, f"/live/{live.id}/audio.m3u8?{query}")
    live.assert_healthy_since(mark, started)


def test_playlist_query_parameters(live: LiveSpace) -> None:
    mark, started = live.log_mark(), time.perf_counter()

    @fuzz(150)
    @given(query=playlist_queries())
    def get(query: str) -> None:
        _get(live, f"/live/{live.id}/audio.m3u8?{query}")

    get()
    live.assert_healthy_since(mark, started)


def test_far_future_playlist_is_refused_at_once(live: LiveSpace) -> None:
    segments = request(live.base, "GET", f"/live/{live.id}/state.json").json()["segments"]
    for query in (f"_HLS_msn={segments + 50}", f"_HLS_msn={segments}&_HLS_part=40"):
        reply = request(live.base, "GET", f"/live/{live.id}/audio.m3u8?{query}")
        live.check(reply, query)
        assert reply.status == 400, (query, reply.status, reply.body)
        # Refused, not held: a held request would end after the whole hold with a 503.
        assert reply.elapsed < HOLD_S - 0.5, (query, reply.elapsed)


_NUMBER = st.one_of(
    st.integers(0, 10**12).map(str),
    st.text(alphabet="0123456789²٣０", min_size=1, max_size=12),
    st.sampled_from(["0", "00", "-1", "1e3", "", "9" * 40]),
)


def test_part_and_segment_numbers(live: LiveSpace) -> None:
    """Part and segment URLs: 200 or 404, a preload hint held no longer than a playlist."""
    mark, started = live.log_mark(), time.perf_counter()

    @fuzz(120)
    @given(kind=st.sampled_from(["p", "s", "other"]), msn=_NUMBER, index=_NUMBER)
    def get(kind: str, msn: str, index: str) -> None:
        msn, index = quote(msn), quote(index)
        name = {"p": f"p/{msn}.{index}.m4s", "s": f"s/{msn}.m4s", "other": f"{msn}.{index}"}
        _get(live, f"/live/{live.id}/{name[kind]}")

    get()
    live.assert_healthy_since(mark, started)
