"""The control WebSocket on a real server: ways to authenticate, close codes, bad messages,
limits (size, rate, connections, idle) and what the server pushes to whom."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType

from tests.e2e.test_stage import Control, Room, bearer, call
from tests.support.server import RunningServer, majlis_server


def ws_url(room: Room) -> str:
    return room.server.base + room.space["control_url"]


async def reconnect(room: Room, token: str, within: float = 5.0) -> Control:
    """A socket, once the server has noticed that another one closed (polled to a deadline)."""
    deadline = time.monotonic() + within
    while True:
        try:
            control = await room.control(token)
            await control.view(lambda v: True, within=2)
            return control
        except (aiohttp.WSServerHandshakeError, AssertionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_token_in_header_subprotocol_or_first_message(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Tokens"))
    token = room.space["host_token"]
    by_header = await room.control(token)
    assert (await by_header.view(lambda v: True))["you"] == {
        "id": "host", "role": "host", "status": "audience", "muted": None, "locked": None
    }  # fmt: skip
    # What a browser can send: the token as a second subprotocol; the server picks its own.
    ws = await http.ws_connect(ws_url(room), protocols=("majlis.control", f"bearer.{token}"))
    assert ws.protocol == "majlis.control"
    assert (await Control(ws).view(lambda v: v["you"]["role"] == "host"))["status"] == "scheduled"
    ws = await http.ws_connect(ws_url(room))
    await ws.send_json({"type": "auth", "token": token})
    assert (await Control(ws).call("ping"))["pong"] is True
    # A token in the query string is not read (URLs get logged): no token, closed with 4401.
    ws = await http.ws_connect(ws_url(room) + f"?token={token}")
    await ws.send_json({"type": "ping"})
    assert await Control(ws).closed() == 4401


async def test_refused_sockets_close_with_a_reason(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Refusals"))
    other = server.create_space("Other")
    cases = [
        ("junk.token", 4401),
        (other["host_token"], 4403),  # another space
    ]
    for token, code in cases:
        ws = await http.ws_connect(ws_url(room), headers=bearer(token))
        message = await ws.receive(timeout=10)
        assert (message.type, message.data) == (WSMsgType.CLOSE, code), message
        assert message.extra, "a close frame says why"
    listener = await room.join()
    ws = await http.ws_connect(ws_url(room), headers=bearer(listener["listener_token"]))
    message = await ws.receive(timeout=10)
    assert message.data == 4403 and "raised hand" in message.extra
    assert (await room.raise_hand(listener["listener_token"]))[0] == 201
    hand = await room.control(listener["listener_token"])
    assert (await hand.view(lambda v: True))["you"]["status"] == "hand_raised"
    async with http.get(ws_url(room)) as resp:  # not an upgrade
        assert resp.status == 426
        assert (await resp.json())["error"] == "upgrade_required"


async def test_refused_messages_get_errors_and_the_socket_stays(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Bad messages"))
    host = await room.control(room.space["host_token"])
    await host.view(lambda v: True)
    bad = [
        ("{}", 'needs a "type" string'),
        ('{"type": 5}', 'needs a "type" string'),
        ('{"type": "fly", "id": "x"}', "unknown message type 'fly'"),
        ('{"type": "mute", "target": 5}', '"target" must be the id'),
        ('{"type": "mute", "target": "nobody"}', "nobody with id 'nobody'"),
        ('{"type": "ping", "id": {"a": 1}}', "id must be a string or an integer"),
        ('{"type": "ping", "id": true}', "id must be a string or an integer"),
        ('{"type": "mute", "target": "host", "lock": "yes"}', '"lock" must be true or false'),
    ]
    for text, detail in bad:
        await host.ws.send_str(text)
        reply = await host.receive()
        while reply["type"] == "state":
            reply = await host.receive()
        assert reply["type"] == "error", (text, reply)
        assert reply["status"] in (400, 404) and detail in reply["detail"], (text[:40], reply)
    assert (await host.call("ping"))["type"] == "ok"
    assert "Traceback" not in server.log()


async def test_a_frame_that_is_not_a_message_closes_only_that_socket(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Malformed"))
    other = await room.control(room.space["host_token"])
    await other.view(lambda v: True)
    for text in ("not json", "[1, 2]", "[" * 2000 + "]" * 2000):  # the last: past the depth
        sock = await room.control(room.space["host_token"])
        await sock.view(lambda v: True)
        await sock.ws.send_str(text)
        assert await sock.closed() == 1007, text[:20]
    # The reason travels in the close frame; the other socket and the space carry on.
    assert (await other.call("ping"))["type"] == "ok"
    assert "Traceback" not in server.log()


async def test_binary_and_oversized_frames_close_the_socket(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Frames"))
    binary = await room.control(room.space["host_token"])
    await binary.ws.send_bytes(b"\x00\x01")
    assert await binary.closed() == 1003
    big = await room.control(room.space["host_token"])
    await big.ws.send_str(json.dumps({"type": "ping", "pad": "x" * 5000}))
    assert await big.closed() == 1009
    assert (await (await room.control(room.space["host_token"])).call("ping"))["type"] == "ok"


async def test_messages_are_rate_limited_per_connection(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Rate"))
    host = await room.control(room.space["host_token"])
    await host.view(lambda v: True)
    for n in range(40):
        await host.ws.send_json({"type": "ping", "id": n})
    replies = []
    while len(replies) < 40:
        reply = await host.receive()
        if reply["type"] != "state":
            replies.append(reply)
    limited = [r for r in replies if r["type"] == "error"]
    assert limited and all(r["status"] == 429 for r in limited), replies
    assert 20 <= len(replies) - len(limited) < 40
    other = await room.control(room.space["host_token"])  # a socket of its own, a bucket too
    assert (await other.call("ping"))["type"] == "ok"


async def test_connections_per_person_are_capped(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Connections"))
    sockets = [await room.control(room.space["host_token"]) for _ in range(4)]
    for ws in sockets:
        await ws.view(lambda v: True)
    fifth = await room.control(room.space["host_token"])
    assert await fifth.closed() == 1013  # try again later
    await sockets[0].ws.close()
    assert (await (await reconnect(room, room.space["host_token"])).call("ping"))["type"] == "ok"


async def test_idle_sockets_are_closed(tmp_path: Path) -> None:
    with majlis_server(tmp_path / "data", env={"MAJLIS_CONTROL_IDLE_S": "1"}) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            room = Room(server, http, server.create_space("Idle"))
            quiet = await room.control(room.space["host_token"])
            chatty = await room.control(room.space["host_token"])
            started = time.monotonic()
            while time.monotonic() - started < 2.0:
                assert (await chatty.call("ping"))["type"] == "ok"
                await asyncio.sleep(0.4)
            assert await quiet.closed(within=5) == 4408
            assert (await chatty.call("ping"))["type"] == "ok"


async def test_the_server_pushes_the_queue_and_invitations(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Pushes"))
    host = await room.control(room.space["host_token"])
    await host.view(lambda v: v["queue"] == [])
    listener = await room.join()
    assert (await room.raise_hand(listener["listener_token"], "Nour"))[0] == 201
    # Pushed, never asked for.
    view = await host.view(lambda v: len(v["queue"]) == 1)
    assert view["queue"][0]["name"] == "Nour" and view["hands"] == 1
    guest = await room.control(listener["listener_token"])
    first = await guest.view(lambda v: True)
    assert "queue" not in first, "only hosts and co-hosts see the queue"
    assert (await host.call("invite", target=listener["id"]))["type"] == "ok"
    invited = await guest.view(lambda v: "invitation" in v)
    assert invited["invitation"]["invited_by"] == "host"
    assert invited["you"]["status"] == "invited"
    status, me = await call(http, "GET", room.url("/listeners/me"), listener["listener_token"])
    assert status == 200 and "recorded" in me["invitation"]["consent_notice"]
    assert (await guest.call("decline"))["type"] == "ok"
    await host.view(lambda v: v["invitations"] == [] and v["queue"] == [])


async def test_only_the_host_ends_and_every_socket_is_told(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("The end"))
    host = await room.control(room.space["host_token"])
    speaker = await room.speaker(host, "guest")
    guest = await room.control(speaker["speaker_token"])
    await guest.view(lambda v: v["you"]["status"] == "on_stage")
    refused = await guest.call("end")
    assert (refused["status"], refused["detail"]) == (
        403,
        "this action needs a host token, not speaker",
    )
    assert (await host.call("end"))["status"] == "ended"
    assert await host.closed() == 4410
    assert await guest.closed() == 4410
    assert (await room.state())["status"] == "ended"
    try:
        await http.ws_connect(ws_url(room), headers=bearer(room.space["host_token"]))
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 409
    else:
        raise AssertionError("a socket opened on an ended space")


async def test_sockets_per_space_are_capped(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Crowded"))
    listeners = await asyncio.gather(*(room.join() for _ in range(60)))
    hands = await asyncio.gather(*(room.raise_hand(lis["listener_token"]) for lis in listeners))
    assert {status for status, _ in hands} == {201}
    tokens = [room.space["host_token"]] * 4 + [lis["listener_token"] for lis in listeners]
    sockets = [await room.control(token) for token in tokens]
    await asyncio.gather(*(ws.view(lambda v: True) for ws in sockets))
    extra = await room.join()
    assert (await room.raise_hand(extra["listener_token"]))[0] == 201
    try:
        await http.ws_connect(ws_url(room), headers=bearer(extra["listener_token"]))
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 503 and exc.headers is not None and "Retry-After" in exc.headers
    else:
        raise AssertionError("a 65th socket was accepted")
    await sockets[-1].ws.close()
    assert (await (await reconnect(room, extra["listener_token"])).call("ping"))["type"] == "ok"
