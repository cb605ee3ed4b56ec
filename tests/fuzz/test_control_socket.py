"""Fuzzing the participants' control WebSocket (/api/spaces/{id}/control) on a live server.

A host's socket gets one frame per connection; a stranger's socket gets its would-be auth
message. Each is answered with {"type": "ok" | "error"} or closed with a code that blames
the client, never 1011; the server logs no traceback and the live space keeps playing.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.live import LiveSpace
from tests.fuzz.strategies import JSON_VALUES
from tests.fuzz.websocket import CLIENT_FAULT_CODES, run_socket_fuzzer, ws_messages

PROTOCOL = "majlis.control"
# The socket's own codes (docs/api.md): bad credentials, refused person.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
# "end" is left out: the fuzzer would end its space at the first try and test nothing more.
TYPES = [
    "ping", "invite", "mute", "unmute", "move_to_audience", "block", "promote", "demote",
    "leave", "lower_hand", "decline", "auth", "raise_hand", "", "END", "ping ",
]  # fmt: skip
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.one_of(st.sampled_from(TYPES), st.text(max_size=20)),
    "id": st.one_of(st.integers(), st.text(max_size=80), JSON_VALUES),
    "target": st.one_of(st.text(max_size=80), JSON_VALUES),
    "lock": JSON_VALUES,
    "token": st.text(max_size=40),
}


def _is_reply(data: str | bytes) -> bool:
    try:
        message = json.loads(data)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") in ("ok", "error")


def _not_end(frame: Any) -> bool:
    try:
        value = json.loads(frame.payload)
    except (ValueError, RecursionError):
        return True
    return not (isinstance(value, dict) and value.get("type") == "end")


def _socket_url(live: LiveSpace, space_id: str) -> str:
    return live.base.replace("http://", "ws://") + f"/api/spaces/{space_id}/control"


def test_host_socket_messages(live: LiveSpace) -> None:
    mark, started = live.log_mark(), time.perf_counter()
    space = live.server.create_space("Control socket fuzzing")
    headers = {"Authorization": f"Bearer {space['host_token']}"}
    seen = run_socket_fuzzer(
        _socket_url(live, space["id"]),
        headers,
        ws_messages(FIELDS).filter(_not_end),
        max_examples=80,
        is_reply=_is_reply,
        protocols=(PROTOCOL,),
        allowed=CLIENT_FAULT_CODES,
    )
    assert seen["reply"] > 0, seen
    live.assert_healthy_since(mark, started)


def test_stranger_socket_first_messages(live: LiveSpace) -> None:
    """No token in the headers: the first frame must be a valid auth message; none is."""
    mark, started = live.log_mark(), time.perf_counter()
    seen = run_socket_fuzzer(
        _socket_url(live, live.id),
        {},
        ws_messages(FIELDS),
        max_examples=50,
        is_reply=_is_reply,
        protocols=(PROTOCOL,),
        allowed=CLIENT_FAULT_CODES | {CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN},
    )
    assert seen["reply"] == 0, seen
    live.assert_healthy_since(mark, started)
