"""Fuzzing JSON bodies of the API: spaces, ending, listener sessions and heartbeats, clips.

Random JSON and non-JSON, wrong types, nesting past the parser's recursion limit, numbers
past a float's range, huge strings: each answer is a success or a 4xx JSON error.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.client import Reply, request
from tests.fuzz.live import LiveSpace
from tests.fuzz.strategies import JSON_VALUES, fuzz, json_bodies

CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
    ]
)
NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**53 + 1]),
    JSON_VALUES,
)
# Header values http.client can send: no CR or LF, latin-1.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)


def _post(
    live: LiveSpace,
    path: str,
    body: bytes,
    content_type: str = "application/json",
    auth: str | None = None,
) -> Reply:
    headers = {"Content-Type": content_type} if content_type else {}
    if auth is not None:
        headers["Authorization"] = auth
    reply = request(live.base, "POST", path, body, headers)
    live.check(reply, body)
    return reply


def test_create_space(live: LiveSpace) -> None:
    mark, started = live.log_mark(), time.perf_counter()
    admin = f"Bearer {live.server.admin_token}"

    @fuzz(120)
    @given(body=json_bodies({"title": st.text(max_size=300)}, "space-"), kind=CONTENT_TYPES)
    def post(body: bytes, kind: str) -> None:
        reply = _post(live, "/api/spaces", body, kind, admin)
        assert reply.status in (201, 400, 413, 415), (reply.status, reply.body)
        if reply.status == 201:
            assert reply.json()["status"] == "scheduled"

    post()
    live.assert_healthy_since(mark, started)


def test_end_space_refuses_strangers(live: LiveSpace) -> None:
    """Anything but the admin or host token is refused, whatever the body: the space lives."""
    mark, started = live.log_mark(), time.perf_counter()

    @fuzz(80)
    @given(
        body=json_bodies({"reason": st.text()}, "space-"),
        auth=st.one_of(st.none(), HEADER_TEXT, HEADER_TEXT.map("Bearer {}".format)),
    )
    def post(body: bytes, auth: str | None) -> None:
        reply = _post(live, f"/api/spaces/{live.id}/end", body, "application/json", auth)
        # 400 only for a header the HTTP parser refuses (control characters).
        assert reply.status in (400, 401, 403, 429), (reply.status, reply.body)
        if reply.status == 400:
            assert "malformed HTTP request" in reply.json()["detail"], reply.body

    post()
    state = request(live.base, "GET", f"/live/{live.id}/state.json").json()
    assert state["status"] == "live", state
    live.assert_healthy_since(mark, started)


SESSION_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "mode": st.sampled_from(["live", "replay", "LIVE", ""]),
    "ticket": st.text(max_size=40),
    "pow": st.fixed_dictionaries({"challenge": st.text(max_size=20), "nonce": st.text()}),
}
BEAT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "mode": st.sampled_from(["live", "replay"]),
    "played_s": NUMBERS,
    "ended": st.booleans(),
}


def test_listener_sessions(live: LiveSpace) -> None:
    mark, started = live.log_mark(), time.perf_counter()

    @fuzz(100)
    @given(body=json_bodies(SESSION_FIELDS, "beat-"), kind=CONTENT_TYPES)
    def post(body: bytes, kind: str) -> None:
        reply = _post(live, f"/live/{live.id}/sessions", body, kind)
        # 429 once this address has opened its burst of sessions.
        assert reply.status in (201, 400, 403, 413, 429), (reply.status, reply.body)

    post()
    live.assert_healthy_since(mark, started)


def test_heartbeats(live: LiveSpace) -> None:
    mark, started = live.log_mark(), time.perf_counter()
    sessions = st.sampled_from([live.listener_session, "x", "", "%FF", "a" * 300])

    @fuzz(120)
    @given(body=json_bodies(BEAT_FIELDS, "beat-"), kind=CONTENT_TYPES, sid=sessions)
    def post(body: bytes, kind: str, sid: str) -> None:
        reply = _post(live, f"/live/{live.id}/sessions/{sid}/heartbeat", body, kind)
        assert reply.status in (204, 400, 404, 405, 409, 413, 429), (reply.status, reply.body)

    post()
    live.assert_healthy_since(mark, started)


def test_clips(live: LiveSpace, replay: dict[str, Any]) -> None:
    mark, started = live.log_mark(), time.perf_counter()
    fields = {"from": NUMBERS, "to": NUMBERS}

    @fuzz(120)
    @given(
        body=json_bodies(fields, "clip-"),
        kind=CONTENT_TYPES,
        space=st.sampled_from([replay["id"], live.id, "nope"]),
    )
    def post(body: bytes, kind: str, space: str) -> None:
        reply = _post(live, f"/api/spaces/{space}/clips", body, kind)
        assert reply.status in (201, 400, 404, 409, 413, 415), (reply.status, reply.body)
        if reply.status == 201:
            clip = request(live.base, "GET", reply.json()["clip_url"])
            assert clip.status == 200 and clip.json()["first_msn"] >= 0, clip

    post()
    live.assert_healthy_since(mark, started)


STAGE_BODIES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "hand": {"name": st.text(max_size=200)},
    "reactions": {
        "emoji": st.one_of(st.sampled_from(["👏", "❤️", "😂", "🔥"]), st.text(max_size=8))
    },
    "invitation/accept": {"consent": st.booleans()},
}


def test_stage_bodies(live: LiveSpace) -> None:
    """A listener's hand, reactions and consent, on a space of their own (the live stage
    stays as it is)."""
    mark, started = live.log_mark(), time.perf_counter()
    space = live.server.create_space("Stage fuzzing")
    joined = request(live.base, "POST", f"/api/spaces/{space['id']}/listeners/join", b"")
    assert joined.status == 201, (joined.status, joined.body)
    auth = f"Bearer {joined.json()['listener_token']}"

    @fuzz(120)
    @given(
        what=st.sampled_from(sorted(STAGE_BODIES)),
        data=st.data(),
        kind=CONTENT_TYPES,
    )
    def post(what: str, data: st.DataObject, kind: str) -> None:
        body = data.draw(json_bodies(STAGE_BODIES[what], "space-"))
        reply = _post(live, f"/api/spaces/{space['id']}/{what}", body, kind, auth)
        assert reply.status < 300 or reply.status in (400, 403, 404, 409, 413, 415, 429), reply

    post()
    live.assert_healthy_since(mark, started)
