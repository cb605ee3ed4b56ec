"""The WebSocket fuzzer itself, on a small socket of this file: a JSON socket that refuses
bad frames the right way passes, and one that fails with 1011 is caught."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from aiohttp import WSCloseCode, WSMsgType, web
from hypothesis import strategies as st

from tests.fuzz.websocket import (
    Frame,
    Outcome,
    check_outcome,
    run_socket_fuzzer,
    send_one,
    ws_messages,
)


async def _socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    async for message in ws:
        if message.type is not WSMsgType.TEXT:
            await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"text frames only")
            break
        try:
            value = json.loads(message.data)
        except (ValueError, RecursionError):
            await ws.send_json({"error": "bad_request", "detail": "not JSON"})
            continue
        if request.query.get("crash") and isinstance(value, dict) and "type" in value:
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"boom")
            break
        await ws.send_json({"ok": isinstance(value, dict)})
    return ws


@pytest.fixture(scope="module")
def socket_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/ws", _socket)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


FIELDS = {"type": st.sampled_from(["raise_hand", "mute", "invite"]), "target": st.text()}


def test_a_socket_that_refuses_properly_passes(socket_url: str) -> None:
    run_socket_fuzzer(socket_url, {}, ws_messages(FIELDS), max_examples=40)


def test_a_socket_that_fails_is_caught(socket_url: str) -> None:
    frame = Frame(WSMsgType.TEXT, b'{"type": "mute"}')
    outcome = asyncio.run(send_one(socket_url + "?crash=1", {}, frame))
    assert outcome == Outcome("closed", 1011)
    with pytest.raises(AssertionError, match="closed with 1011"):
        check_outcome(outcome)
