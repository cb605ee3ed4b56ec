"""The stage through the public interfaces: listener routes over HTTP, the host's control
WebSocket, WHIP publishers made of aiortc, and the mix measured by FFT."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from tests.support.audio import decode_mp4, tone_power
from tests.support.player import Player
from tests.support.server import RunningServer, majlis_server, stop
from tests.support.whip import ToneTrack, publish

HOST_TONE = 440.0
GUEST_TONE = 880.0
PRESENT = 0.15
ABSENT = 0.01


# -- helpers shared with test_control_ws.py ------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: object = None,
) -> tuple[int, Any]:
    """One request; returns (status, JSON body or text or None)."""
    headers = bearer(token) if token else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    async with http.request(method, url, **kwargs) as resp:
        text = await resp.text()
        if resp.content_type == "application/json":
            return resp.status, json.loads(text)
        return resp.status, text or None


@dataclass
class Room:
    server: RunningServer
    http: aiohttp.ClientSession
    space: dict[str, Any]

    def url(self, suffix: str) -> str:
        return f"{self.server.base}/api/spaces/{self.space['id']}{suffix}"

    async def join(self) -> dict[str, Any]:
        status, body = await call(self.http, "POST", self.url("/listeners/join"))
        assert status == 201, body
        assert set(body) == {"id", "listener_token", "expires_at"}
        return dict(body)

    async def raise_hand(self, token: str, name: str = "guest") -> tuple[int, Any]:
        return await call(self.http, "POST", self.url("/hand"), token, {"name": name})

    async def accept(self, token: str) -> dict[str, Any]:
        status, body = await call(
            self.http, "POST", self.url("/invitation/accept"), token, {"consent": True}
        )
        assert status == 200, body
        return dict(body)

    async def state(self) -> dict[str, Any]:
        async with self.http.get(self.server.base + self.space["state_url"]) as resp:
            assert resp.status == 200
            result: dict[str, Any] = await resp.json()
            return result

    async def control(self, token: str) -> Control:
        ws = await self.http.ws_connect(
            self.server.base + self.space["control_url"], headers=bearer(token)
        )
        return Control(ws)

    async def speaker(self, host: Control, name: str) -> dict[str, Any]:
        """A listener joins, raises a hand, is invited by ``host`` and accepts."""
        listener = await self.join()
        status, body = await self.raise_hand(listener["listener_token"], name)
        assert status == 201, body
        reply = await host.call("invite", target=listener["id"])
        assert reply["type"] == "ok", reply
        return {**listener, **await self.accept(listener["listener_token"])}


@dataclass
class Control:
    """A control WebSocket: requests with ids, and the room views the server pushes."""

    ws: aiohttp.ClientWebSocketResponse
    views: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    async def receive(self, within: float = 10.0) -> dict[str, Any]:
        message = await self.ws.receive(timeout=within)
        if message.type is not WSMsgType.TEXT:
            raise AssertionError(f"socket closed: {message.type} {self.ws.close_code}")
        data: dict[str, Any] = json.loads(message.data)
        if data["type"] == "state":
            self.views.append(data)
        return data

    async def call(self, kind: str, **fields: object) -> dict[str, Any]:
        self.count += 1
        request_id = f"r{self.count}"
        await self.ws.send_json({"type": kind, "id": request_id, **fields})
        while True:
            data = await self.receive()
            if data.get("id") == request_id and data["type"] in ("ok", "error"):
                return data

    async def view(self, check: Callable[[dict[str, Any]], bool], within: float = 10.0) -> Any:
        """The first pushed view (latest seen first) for which ``check`` holds."""
        deadline = time.monotonic() + within
        if self.views and check(self.views[-1]):
            return self.views[-1]
        while (left := deadline - time.monotonic()) > 0:
            data = await self.receive(left)
            if data["type"] == "state" and check(data):
                return data
        raise AssertionError(f"no such view; last: {self.views[-1:]}")

    async def closed(self, within: float = 10.0) -> int | None:
        """Wait for the server to close the socket; the code in its close frame (aiohttp's
        client may report 1006 instead when its own close reply finds the socket gone)."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            message = await self.ws.receive(timeout=left)
            if message.type is WSMsgType.CLOSE:
                return int(message.data)
            if message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                return self.ws.close_code
        raise AssertionError("the socket stayed open")


async def until(what: str, check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def powers(room: Room, seconds: float = 3.0) -> dict[float, float]:
    player = Player(room.http, room.server.base + room.space["playlist_url"])
    await player.run(seconds)
    samples = decode_mp4(player.media())
    assert samples.size > 48_000, f"only {samples.size} samples"
    return {f: tone_power(samples, f) for f in (HOST_TONE, GUEST_TONE)}


# -- the tests -----------------------------------------------------------------------------


async def test_invited_listener_is_heard_then_muted_with_lock_then_unmuted(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("On stage"))
    host_pub = await publish(
        http, server.base, room.space["whip_url"], room.space["host_token"], ToneTrack(HOST_TONE)
    )
    host = await room.control(room.space["host_token"])
    pubs = [host_pub]
    try:
        listener = await room.join()
        token = listener["listener_token"]
        # A listener cannot publish before being invited and accepting.
        offer_refused = await call(http, "POST", server.base + room.space["whip_url"], token)
        assert offer_refused[0] == 403, offer_refused
        assert "accepting an invitation" in offer_refused[1]["detail"]
        assert (await room.raise_hand(token, "Guest"))[0] == 201
        queued = await host.view(lambda v: [h["id"] for h in v["queue"]] == [listener["id"]])
        assert queued["queue"][0]["name"] == "Guest" and queued["hands"] == 1
        assert (await host.call("invite", target=listener["id"]))["type"] == "ok"
        # Going on stage needs consent to the recording.
        status, body = await call(http, "POST", room.url("/invitation/accept"), token, {})
        assert (status, body["error"]) == (400, "consent_required"), body
        assert "recorded" in body["detail"]
        accepted = await room.accept(token)
        assert accepted["role"] == "speaker" and "recorded" in accepted["consent"]["notice"]
        guest = await publish(
            http, server.base, accepted["whip_url"], accepted["speaker_token"],
            ToneTrack(GUEST_TONE),
        )  # fmt: skip
        pubs.append(guest)
        guest_ws = await room.control(accepted["speaker_token"])

        await asyncio.sleep(1.5)  # ICE + DTLS + jitter buffer
        heard = await powers(room)
        assert heard[GUEST_TONE] > PRESENT and heard[HOST_TONE] > PRESENT, heard
        on_stage = {s["id"]: s for s in (await room.state())["stage"]}
        assert on_stage[listener["id"]]["name"] == "Guest"
        assert on_stage[listener["id"]]["talking"] and not on_stage[listener["id"]]["muted"]

        reply = await host.call("mute", target=listener["id"], lock=True)
        assert (reply["muted"], reply["locked"]) == (True, True), reply
        await asyncio.sleep(0.6)  # parts already encoded before the mute
        muted = await powers(room)
        assert muted[GUEST_TONE] < ABSENT and muted[HOST_TONE] > PRESENT, muted
        assert {s["id"]: s for s in (await room.state())["stage"]}[listener["id"]]["muted"]

        refused = await guest_ws.call("unmute")
        assert (refused["type"], refused["status"]) == ("error", 403), refused
        assert "locked" in refused["detail"]
        assert (await host.call("unmute", target=listener["id"]))["muted"] is False
        await asyncio.sleep(0.6)  # parts encoded while it was muted
        back = await powers(room)
        assert back[GUEST_TONE] > PRESENT, back

        status, stored = await call(http, "GET", room.url("/consents"), room.space["host_token"])
        assert status == 200, stored
        (consent,) = stored["consents"]
        assert consent["id"] == listener["id"] and consent["name"] == "Guest"
        assert "recorded" in consent["notice"] and abs(consent["at"] - time.time()) < 60
        speaker_sees = await call(http, "GET", room.url("/consents"), accepted["speaker_token"])
        assert speaker_sees[0] == 403, speaker_sees
    finally:
        for pub in pubs:
            await pub.pc.close()


async def test_permission_rules(server: RunningServer, http: aiohttp.ClientSession) -> None:
    room = Room(server, http, server.create_space("Rules"))
    host = await room.control(room.space["host_token"])
    first = await room.speaker(host, "first")
    speaker = await room.control(first["speaker_token"])

    # A speaker cannot invite.
    other = await room.join()
    assert (await room.raise_hand(other["listener_token"]))[0] == 201
    refused = await speaker.call("invite", target=other["id"])
    assert (refused["status"], refused["error"]) == (403, "forbidden"), refused
    assert "only the host or a co-host can invite" in refused["detail"]
    # A speaker cannot mute someone else, nor end the space.
    second = await room.speaker(host, "second")
    refused = await speaker.call("mute", target=second["id"])
    assert refused["status"] == 403, refused
    assert (await speaker.call("end"))["status"] == 403

    # Co-hosts: two at most; the third promotion is refused; a co-host cannot end.
    third = await room.speaker(host, "third")
    assert (await host.call("promote", target=first["id"]))["role"] == "cohost"
    assert (await host.call("promote", target=second["id"]))["role"] == "cohost"
    refused = await host.call("promote", target=third["id"])
    assert (refused["status"], refused["error"]) == (409, "conflict"), refused
    assert "2 co-hosts already" in refused["detail"]
    cohost = speaker  # the same socket: every message is authorized against the stage as it is
    assert (await cohost.view(lambda v: v["you"]["role"] == "cohost"))["you"]["id"] == first["id"]
    refused = await cohost.call("end")
    assert (refused["status"], refused["detail"]) == (
        403,
        "this action needs a host token, not cohost",
    )
    status, body = await call(http, "POST", room.url("/end"), first["speaker_token"])
    assert (status, body["detail"]) == (403, "this action needs a host token, not cohost"), body
    assert (await room.state())["status"] != "ended"
    # ...but a co-host can invite.
    assert (await cohost.call("invite", target=other["id"]))["type"] == "ok"
    await room.accept(other["listener_token"])

    # The stage holds 10 speakers besides the host and co-hosts: the 11th is refused.
    for n in range(8):  # third, other + 8 = 10 speakers
        await room.speaker(host, f"s{n}")
    state = await room.state()
    assert sum(s["role"] == "speaker" for s in state["stage"]) == 10, state["stage"]
    assert sum(s["role"] == "cohost" for s in state["stage"]) == 2
    eleventh = await room.join()
    assert (await room.raise_hand(eleventh["listener_token"]))[0] == 201
    refused = await host.call("invite", target=eleventh["id"])
    assert (refused["status"], refused["detail"]) == (409, "the stage is full (10 speakers)")
    # The shared speaker link counts too.
    link = await publish_status(room, room.space["speaker_token"])
    assert link == (409, "the stage is full (10 speakers)"), link
    # Moving one speaker back frees a place.
    assert (await host.call("move_to_audience", target=third["id"]))["type"] == "ok"
    assert (await host.call("invite", target=eleventh["id"]))["type"] == "ok"


async def publish_status(room: Room, token: str) -> tuple[int, str]:
    """Offer an SDP that never gets used; the refusal (if any) comes before ICE."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with room.http.post(
            room.server.base + room.space["whip_url"],
            data=pc.localDescription.sdp,
            headers={**bearer(token), "Content-Type": "application/sdp"},
        ) as resp:
            body = await resp.text()
            detail = json.loads(body)["detail"] if resp.status >= 400 else ""
            return resp.status, detail
    finally:
        await pc.close()


async def test_a_blocked_speaker_is_cut_off_at_once(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Blocking"))
    host = await room.control(room.space["host_token"])
    guest = await room.speaker(host, "guest")
    pub = await publish(
        http, server.base, guest["whip_url"], guest["speaker_token"], ToneTrack(GUEST_TONE)
    )
    try:
        guest_ws = await room.control(guest["speaker_token"])
        await guest_ws.view(lambda v: v["you"]["status"] == "on_stage")

        async def connected() -> bool:
            return any(s["connected"] for s in (await room.state())["stage"])

        await until("the guest's WHIP session", connected)
        session_url = server.base + pub.location
        assert (await host.call("block", target=guest["id"]))["type"] == "ok"
        # WebSocket: closed by the server with 4403.
        assert await guest_ws.closed() == 4403
        # WHIP: their session is gone, and they cannot publish again.
        assert (await room.state())["stage"] == []
        status, _ = await call(http, "DELETE", session_url, room.space["host_token"])
        assert status == 404
        refused = await publish_status(room, guest["speaker_token"])
        assert refused == (403, "you have been removed from this space"), refused
        # Hand raising, reactions and a new socket: refused with the same reason.
        for token in (guest["listener_token"], guest["speaker_token"]):
            status, body = await room.raise_hand(token)
            assert (status, body["detail"]) == (403, "you have been removed from this space")
            status, body = await call(http, "POST", room.url("/reactions"), token, {"emoji": "👏"})
            assert status == 403, body
        again = await room.control(guest["listener_token"])
        assert await again.closed() == 4403
    finally:
        await pub.pc.close()


async def test_moved_to_the_audience_the_speaker_token_stops_the_listener_token_works(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Moving"))
    host = await room.control(room.space["host_token"])
    guest = await room.speaker(host, "guest")
    first = await publish(
        http, server.base, guest["whip_url"], guest["speaker_token"], ToneTrack(GUEST_TONE)
    )
    pub = first
    try:
        # Publishing again (a reload, a new network): the newer session replaces the older.
        pub = await publish(
            http, server.base, guest["whip_url"], guest["speaker_token"], ToneTrack(GUEST_TONE)
        )
        await first.pc.close()
        status, _ = await call(http, "DELETE", server.base + first.location, guest["speaker_token"])
        assert status == 404
        (entry,) = (await room.state())["stage"]
        assert entry["id"] == guest["id"] and entry["connected"]
        guest_ws = await room.control(guest["speaker_token"])
        await guest_ws.view(lambda v: v["you"]["status"] == "on_stage")
        assert (await host.call("move_to_audience", target=guest["id"]))["type"] == "ok"
        assert await guest_ws.closed() == 4401  # the speaker token was revoked
        assert (await room.state())["stage"] == []
        status, body = await call(http, "GET", room.url("/listeners/me"), guest["speaker_token"])
        assert (status, body["detail"]) == (401, "token has been revoked")
        assert (await publish_status(room, guest["speaker_token"]))[0] == 401
        # Back in the audience: the listener token still raises a hand.
        status, body = await call(http, "GET", room.url("/listeners/me"), guest["listener_token"])
        assert (status, body["status"], body["role"]) == (200, "audience", "audience"), body
        assert (await room.raise_hand(guest["listener_token"]))[0] == 201
    finally:
        await pub.pc.close()


async def test_a_blocked_listener_cannot_raise_a_hand(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Queue"))
    host = await room.control(room.space["host_token"])
    listener = await room.join()
    assert (await room.raise_hand(listener["listener_token"]))[0] == 201
    await host.view(lambda v: len(v["queue"]) == 1)
    assert (await host.call("block", target=listener["id"]))["type"] == "ok"
    await host.view(lambda v: v["queue"] == [])
    status, body = await room.raise_hand(listener["listener_token"])
    assert (status, body["error"]) == (403, "forbidden"), body
    assert (await room.state())["hands"] == 0


async def test_state_json_is_versioned_cacheable_and_answers_304(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("State"))
    url = server.base + room.space["state_url"]
    async with http.get(url) as resp:
        assert resp.headers["Cache-Control"] == "public, max-age=1"
        etag = resp.headers["ETag"]
        first = await resp.json()
    assert {"version", "stage", "hands", "listeners", "reactions", "status"} <= set(first)
    assert first["status"] == "scheduled" and first["hands"] == 0
    for header in (etag, f"W/{etag}", f'"other", {etag}'):
        async with http.get(url, headers={"If-None-Match": header}) as resp:
            assert resp.status == 304, header
            assert resp.headers["ETag"] == etag
            assert await resp.read() == b""
    listener = await room.join()
    assert (await room.raise_hand(listener["listener_token"]))[0] == 201
    async with http.get(url, headers={"If-None-Match": etag}) as resp:
        assert resp.status == 200
        changed = await resp.json()
        assert resp.headers["ETag"] != etag
    assert changed["version"] > first["version"] and changed["hands"] == 1


async def test_reactions_are_counted_and_rate_limited(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    room = Room(server, http, server.create_space("Reactions"))
    fan, other = await room.join(), await room.join()
    url = room.url("/reactions")
    statuses = []
    for _ in range(7):
        status, _ = await call(http, "POST", url, fan["listener_token"], {"emoji": "👏"})
        statuses.append(status)
    assert statuses == [204] * 5 + [429] * 2, statuses
    async with http.post(url, headers=bearer(fan["listener_token"]), json={"emoji": "👏"}) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        assert (await r.json())["error"] == "too_many_requests"
    assert (await call(http, "POST", url, other["listener_token"], {"emoji": "🔥"}))[0] == 204
    status, body = await call(http, "POST", url, other["listener_token"], {"emoji": "<b>"})
    assert (status, body["error"]) == (400, "bad_request") and "emoji must be one of" in body[
        "detail"
    ]
    assert (await call(http, "POST", url, None, {"emoji": "👏"}))[0] == 401
    reactions = (await room.state())["reactions"]
    assert reactions["total"] == {"👏": 5, "🔥": 1}
    assert reactions["recent"] == {"👏": 5, "🔥": 1}


def unfold(text: str) -> dict[str, str]:
    """A strict little RFC 5545 reader: CRLF everywhere, lines of at most 75 octets, folded
    lines start with one space, one VEVENT inside one VCALENDAR; returns its properties."""
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    physical = text.removesuffix("\r\n").split("\r\n")
    assert all(len(line.encode()) <= 75 for line in physical)
    lines: list[str] = []
    for line in physical:
        if line.startswith(" "):
            lines[-1] += line[1:]
        else:
            lines.append(line)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    assert lines.count("BEGIN:VEVENT") == 1 and lines.count("END:VEVENT") == 1
    props = {}
    for line in lines[1:-1]:
        name, _, value = line.partition(":")
        props[name.split(";")[0]] = value
    return props


async def test_scheduled_space_and_its_calendar_event(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    starts = "2030-06-01T18:30:00+03:00"
    headers = bearer(server.admin_token)
    plan = {
        "title": "Elon Musk مع ترامب, live",
        "description": "First line\nسطر ثان; " + "طويل " * 30,
        "language": "ar",
        "starts_at": starts,
    }
    async with http.post(server.base + "/api/spaces", json=plan, headers=headers) as resp:
        assert resp.status == 400  # more than a year ahead
    plan["starts_at"] = datetime.now(UTC).replace(microsecond=0).isoformat()
    async with http.post(server.base + "/api/spaces", json=plan, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        space = await resp.json()
    assert space["status"] == "scheduled" and space["language"] == "ar"
    assert space["starts_at"] == datetime.fromisoformat(plan["starts_at"]).timestamp()
    async with http.get(server.base + space["event_url"]) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/calendar; charset=utf-8"
        props = unfold((await resp.read()).decode("utf-8"))
    assert props["VERSION"] == "2.0" and props["PRODID"]
    assert props["UID"] == f"{space['id']}@majlis"
    start = datetime.fromisoformat(plan["starts_at"]).astimezone(UTC)
    assert props["DTSTART"] == start.strftime("%Y%m%dT%H%M%SZ")
    assert len(props["DTSTAMP"]) == 16 and props["DTSTAMP"].endswith("Z")
    assert props["SUMMARY"] == "Elon Musk مع ترامب\\, live"
    assert props["DESCRIPTION"].startswith("First line\\nسطر ثان\\; طويل")
    assert props["URL"] == f"{server.base}/s/{space['id']}"
    for bad in ({"language": "not a tag"}, {"starts_at": "2030-06-01T18:30:00"}):
        async with http.post(
            server.base + "/api/spaces", json={"title": "x", **bad}, headers=headers
        ) as resp:
            assert resp.status == 400, bad
            assert (await resp.json())["error"] == "bad_request"


async def test_restart_keeps_roles_bans_queue_and_consents(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        with majlis_server(data) as first:
            room = Room(first, http, first.create_space("Survives"))
            host = await room.control(room.space["host_token"])
            cohost = await room.speaker(host, "cohost")
            assert (await host.call("promote", target=cohost["id"]))["type"] == "ok"
            muted = await room.speaker(host, "muted")
            assert (await host.call("mute", target=muted["id"], lock=True))["type"] == "ok"
            blocked, waiting = await room.join(), await room.join()
            assert (await room.raise_hand(blocked["listener_token"]))[0] == 201
            assert (await host.call("block", target=blocked["id"]))["type"] == "ok"
            assert (await room.raise_hand(waiting["listener_token"], "waiting"))[0] == 201
            moved = await room.speaker(host, "moved")
            assert (await host.call("move_to_audience", target=moved["id"]))["type"] == "ok"
            await host.ws.close()
            assert stop(first.process) == 0, first.log()

        with majlis_server(data) as second:
            room = Room(second, http, room.space)
            state = await room.state()
            roles = {s["name"]: (s["role"], s["muted"]) for s in state["stage"]}
            assert roles == {"cohost": ("cohost", False), "muted": ("speaker", True)}, state
            assert state["hands"] == 1
            again = await room.control(cohost["speaker_token"])
            view = await again.view(lambda v: v["you"]["role"] == "cohost")
            assert [h["name"] for h in view["queue"]] == ["waiting"]
            muted_ws = await room.control(muted["speaker_token"])
            assert (await muted_ws.call("unmute"))["status"] == 403  # still locked
            status, body = await room.raise_hand(blocked["listener_token"])
            assert (status, body["detail"]) == (403, "you have been removed from this space")
            status, body = await call(
                http, "GET", room.url("/listeners/me"), moved["speaker_token"]
            )
            assert (status, body["detail"]) == (401, "token has been revoked")
            status, stored = await call(
                http, "GET", room.url("/consents"), room.space["host_token"]
            )
            assert {c["name"] for c in stored["consents"]} == {"cohost", "muted", "moved"}
