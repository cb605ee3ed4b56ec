"""Fuzzing the request headers the server reads: Accept-Language, If-None-Match, Authorization."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import corpus
from tests.fuzz.client import request
from tests.fuzz.live import LiveSpace
from tests.fuzz.strategies import fuzz

# What http.client can put in a header value: no CR or LF, latin-1.
HEADER = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120)
LANGUAGE_ITEM = st.one_of(
    st.sampled_from(["ar", "en", "ar-EG", "en-GB", "*", "fr", "", "AR", "ar_SA"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
)
Q = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "1", "0", "-1", "1e999", "nan", "0.5;q=2", "x"]),
)
ACCEPT_LANGUAGE = st.one_of(
    HEADER,
    st.lists(st.tuples(LANGUAGE_ITEM, st.none() | Q), max_size=30).map(
        lambda items: ",".join(tag + (f";q={q}" if q is not None else "") for tag, q in items)
    ),
)
AUTHORIZATION = st.one_of(
    HEADER,
    HEADER.map("Bearer {}".format),
    st.sampled_from(["Bearer", "Bearer ", "bearer x.y", "Basic YTpi", "Bearer a.b.c", "Bearer ."]),
    st.binary(max_size=60).map(
        lambda b: "Bearer " + b.decode("latin-1").replace("\r", "").replace("\n", "")
    ),
)


def test_pages_choose_a_language_whatever_is_asked(live: LiveSpace) -> None:
    mark, started = live.log_mark(), time.perf_counter()

    @fuzz(80)
    @given(accept=ACCEPT_LANGUAGE, lang=st.none() | st.sampled_from(["ar", "en", "xx", ""]))
    def get(accept: str, lang: str | None) -> None:
        path = f"/s/{live.id}" + (f"?lang={lang}" if lang is not None else "")
        reply = request(live.base, "GET", path, headers={"Accept-Language": accept})
        live.check(reply, accept)
        if reply.status != 400:  # 400: a header the HTTP parser refuses (control characters)
            assert reply.status == 200, (reply.status, reply.body[:200])
            assert reply.headers["content-language"] in ("en", "ar"), reply.headers

    get()
    live.assert_healthy_since(mark, started)


def test_state_with_any_etag(live: LiveSpace) -> None:
    @fuzz(40)
    @given(etag=HEADER)
    def get(etag: str) -> None:
        headers = {"If-None-Match": etag}
        reply = request(live.base, "GET", f"/live/{live.id}/state.json", headers=headers)
        live.check(reply, etag)
        assert reply.status in (200, 304, 400), (reply.status, reply.body[:200])

    get()


def test_tokens_that_are_not_the_right_one(live: LiveSpace) -> None:
    """Whatever the Authorization header holds, no stranger lists spaces or publishes."""
    mark, started = live.log_mark(), time.perf_counter()
    offer = corpus.sdp_offer("aiortc-audio")

    @fuzz(80)
    @given(auth=AUTHORIZATION, where=st.sampled_from(["list", "whip"]))
    def send(auth: str, where: str) -> None:
        headers = {"Authorization": auth, "Content-Type": "application/sdp"}
        if where == "list":
            reply = request(live.base, "GET", "/api/spaces", headers=headers)
        else:
            reply = request(live.base, "POST", f"/whip/{live.id}", offer, headers)
        live.check(reply, auth)
        assert reply.status in (400, 401, 403), (reply.status, reply.body[:200])

    send()
    live.assert_healthy_since(mark, started)
