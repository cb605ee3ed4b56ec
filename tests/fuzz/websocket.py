"""Fuzzing a WebSocket endpoint, ready for the participants' control socket (stage, roles).

No WebSocket endpoint exists yet. When one does, its fuzzer is a few lines:

    def test_control_socket(live: LiveSpace) -> None:
        url = live.base.replace("http", "ws") + f"/ws/{live.id}"
        headers = {"Authorization": f"Bearer {live.space['host_token']}"}
        run_socket_fuzzer(url, headers, ws_messages({"type": st.sampled_from([...]), ...}))
        live.assert_healthy_since(mark, started)

Each example opens a connection, sends one frame and reads what comes back. The property:
the server answers with a message, says nothing, or closes with a code that blames the
client (1000, 1003, 1007, 1008, 1009); never 1011 (its own error), never a dropped connection
without a close frame, and the next connection works again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import aiohttp
from aiohttp import WSMsgType
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.strategies import JSON_VALUES, fuzz

# RFC 6455 7.4.1: normal, unsupported data, invalid payload, policy violation, too big.
CLIENT_FAULT_CODES = frozenset({1000, 1003, 1007, 1008, 1009})
REPLY_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Frame:
    opcode: WSMsgType
    payload: bytes


def _json_frames(fields: dict[str, st.SearchStrategy[object]]) -> st.SearchStrategy[Frame]:
    objects = st.fixed_dictionaries({}, optional=fields)
    values = st.one_of(objects, JSON_VALUES, st.dictionaries(st.text(max_size=8), JSON_VALUES))
    return values.map(lambda v: Frame(WSMsgType.TEXT, json.dumps(v).encode()))


def ws_messages(fields: dict[str, st.SearchStrategy[object]]) -> st.SearchStrategy[Frame]:
    """Frames for an endpoint that reads JSON objects with ``fields``: right and wrong types,
    any JSON, text that is not JSON or not UTF-8, binary, deep nesting, a megabyte."""
    return st.one_of(
        _json_frames(fields),
        st.text(max_size=64).map(lambda t: Frame(WSMsgType.TEXT, t.encode("utf-8", "replace"))),
        st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"]).map(
            lambda b: Frame(WSMsgType.TEXT, b)
        ),
        st.binary(max_size=64).map(lambda b: Frame(WSMsgType.BINARY, b)),
        st.sampled_from([500, 1_000, 5_000]).map(
            lambda n: Frame(WSMsgType.TEXT, b"[" * n + b"]" * n)
        ),
        st.just(Frame(WSMsgType.TEXT, b'{"x": "' + b"a" * 1_000_000 + b'"}')),
    )


@dataclass(frozen=True)
class Outcome:
    kind: str  # "reply", "silent" or "closed"
    close_code: int | None = None


async def send_one(url: str, headers: dict[str, str], frame: Frame) -> Outcome:
    """Open a connection, send ``frame``, and report how the server answered."""
    timeout = aiohttp.ClientTimeout(total=REPLY_TIMEOUT_S + 10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.ws_connect(url, headers=headers, autoping=True, max_msg_size=0) as ws,
    ):
        await ws.send_frame(frame.payload, frame.opcode)
        try:
            message = await ws.receive(timeout=REPLY_TIMEOUT_S)
        except TimeoutError:
            return Outcome("silent")
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            return Outcome("reply")
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return Outcome("closed", ws.close_code)
        raise AssertionError(f"unexpected {message.type}: {message.data!r:.200}")


def check_outcome(outcome: Outcome) -> None:
    if outcome.kind == "closed":
        assert outcome.close_code in CLIENT_FAULT_CODES, f"closed with {outcome.close_code}"


def run_socket_fuzzer(
    url: str,
    headers: dict[str, str],
    messages: st.SearchStrategy[Frame],
    max_examples: int = 60,
) -> None:
    @fuzz(max_examples)
    @given(frame=messages)
    def one(frame: Frame) -> None:
        check_outcome(asyncio.run(send_one(url, headers, frame)))

    one()
    # Still serving after everything above.
    check_outcome(asyncio.run(send_one(url, headers, Frame(WSMsgType.TEXT, b"{}"))))
