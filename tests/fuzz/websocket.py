"""Fuzzing a WebSocket endpoint, such as the participants' control socket.

Each example opens a connection, sends one frame and reads until the server answers it (a
message ``is_reply`` accepts), closes, or stays silent for REPLY_TIMEOUT_S. The property:
the server answers, says nothing, or closes with a code that blames the client (1000, 1003,
1007, 1008, 1009, or the endpoint's own 4xxx codes); never 1011 (its own error), never a
dropped connection without a close frame; and the next connection works again.
test_control_socket.py shows how an endpoint is fuzzed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
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


def any_message(data: str | bytes) -> bool:
    return True


async def send_one(
    url: str,
    headers: dict[str, str],
    frame: Frame,
    is_reply: Callable[[str | bytes], bool] = any_message,
    protocols: tuple[str, ...] = (),
) -> Outcome:
    """Open a connection, send ``frame``, and report how the server answered."""
    timeout = aiohttp.ClientTimeout(total=REPLY_TIMEOUT_S + 10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.ws_connect(
            url, headers=headers, protocols=protocols, autoping=True, max_msg_size=0
        ) as ws,
    ):
        await ws.send_frame(frame.payload, frame.opcode)
        deadline = asyncio.get_running_loop().time() + REPLY_TIMEOUT_S
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                message = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                if is_reply(message.data):
                    return Outcome("reply")
                continue
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return Outcome("closed", ws.close_code)
            raise AssertionError(f"unexpected {message.type}: {message.data!r:.200}")
        return Outcome("silent")


def check_outcome(outcome: Outcome, allowed: frozenset[int] = CLIENT_FAULT_CODES) -> None:
    if outcome.kind == "closed":
        assert outcome.close_code in allowed, f"closed with {outcome.close_code}"


def run_socket_fuzzer(
    url: str,
    headers: dict[str, str],
    messages: st.SearchStrategy[Frame],
    max_examples: int = 60,
    *,
    is_reply: Callable[[str | bytes], bool] = any_message,
    protocols: tuple[str, ...] = (),
    allowed: frozenset[int] = CLIENT_FAULT_CODES,
) -> Counter[str]:
    """Run the fuzzer; returns how often each outcome was seen (e.g. "closed 1009")."""
    seen: Counter[str] = Counter()

    def send(frame: Frame) -> None:
        outcome = asyncio.run(send_one(url, headers, frame, is_reply, protocols))
        seen[outcome.kind + ("" if outcome.close_code is None else f" {outcome.close_code}")] += 1
        check_outcome(outcome, allowed)

    @fuzz(max_examples)
    @given(frame=messages)
    def one(frame: Frame) -> None:
        send(frame)

    one()
    # Still serving after everything above.
    send(Frame(WSMsgType.TEXT, b"{}"))
    return seen
