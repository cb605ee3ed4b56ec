"""The WHIP contract (RFC 9725) as publishers see it: preflight, offer/answer, the session's
state (GET), PATCH, DELETE, and an OBS-like offer with a video section that must be declined
without harm."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)

from majlis.ingest.ice import configure_ice
from tests.support.audio import decode_mp4, tone_power
from tests.support.player import Player
from tests.support.server import RunningServer, majlis_server
from tests.support.whip import ToneTrack


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with majlis_server(tmp_path_factory.mktemp("whip") / "data") as running:
        yield running


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: str
    pc: RTCPeerConnection

    @property
    def session(self) -> str:
        return self.headers["Location"].rsplit("/", 1)[1]

    def sections(self) -> list[list[str]]:
        """The answer's media sections, each a list of lines starting with its m= line."""
        out: list[list[str]] = []
        for line in self.body.splitlines():
            if line.startswith("m="):
                out.append([])
            if out:
                out[-1].append(line)
        return out


def _offering_pc(video: bool = False, freq: float = 1000.0) -> RTCPeerConnection:
    configure_ice(("127.0.0.1",))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(ToneTrack(freq), direction="sendonly")
    if video:
        # OBS offers Opus and H.264 in one bundle.
        transceiver = pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        codecs = RTCRtpSender.getCapabilities("video").codecs
        transceiver.setCodecPreferences([c for c in codecs if c.mimeType == "video/H264"])
    return pc


async def _post(
    http: aiohttp.ClientSession, server: RunningServer, space: dict[str, str], pc: Any
) -> Answer:
    await pc.setLocalDescription(await pc.createOffer())
    headers = {
        "Content-Type": "application/sdp",
        "Authorization": f"Bearer {space['speaker_token']}",
        "Origin": "https://studio.example",
    }
    url = server.base + space["whip_url"]
    async with http.post(url, data=pc.localDescription.sdp, headers=headers) as resp:
        answer = Answer(resp.status, resp.headers.copy(), await resp.text(), pc)
    assert answer.status == 201, answer.body
    await pc.setRemoteDescription(RTCSessionDescription(answer.body, "answer"))
    return answer


async def _stage(http: aiohttp.ClientSession, server: RunningServer, space: dict[str, str]) -> Any:
    async with http.get(server.base + space["state_url"]) as resp:
        return (await resp.json())["stage"]


def _split(header: str) -> set[str]:
    return {item.strip().lower() for item in header.split(",")}


async def test_preflight(server: RunningServer, http: aiohttp.ClientSession) -> None:
    space = server.create_space("Preflight")
    browser = {
        "Origin": "https://studio.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with http.options(server.base + space["whip_url"], headers=browser) as resp:
        assert resp.status == 204
        assert await resp.read() == b""
        headers = resp.headers
    assert headers["Accept-Post"] == "application/sdp"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert {"post", "delete", "options"} <= _split(headers["Access-Control-Allow-Methods"])
    assert {"authorization", "content-type"} <= _split(headers["Access-Control-Allow-Headers"])
    assert "location" in _split(headers["Access-Control-Expose-Headers"])
    # The session URL answers its own preflight (a browser's DELETE needs one).
    async with http.options(
        f"{server.base}{space['whip_url']}/any-session",
        headers={**browser, "Access-Control-Request-Method": "DELETE"},
    ) as resp:
        assert resp.status == 204
        assert "delete" in _split(resp.headers["Access-Control-Allow-Methods"])


async def test_offer_answer_patch_delete(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = server.create_space("Contract")
    answer = await _post(http, server, space, _offering_pc())
    try:
        assert answer.headers["Content-Type"] == "application/sdp"
        assert answer.headers["Location"] == f"{space['whip_url']}/{answer.session}"
        assert answer.headers["ETag"].strip('"')
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        assert "location" in _split(answer.headers["Access-Control-Expose-Headers"])
        candidates = [ln.split()[4] for ln in answer.body.splitlines() if ln.startswith("a=cand")]
        assert candidates and set(candidates) == {"127.0.0.1"}, candidates
        assert "a=end-of-candidates" in answer.body, "the answer carries every candidate"
        assert "a=fingerprint:sha-256 " in answer.body
        (audio,) = answer.sections()
        assert audio[0].startswith("m=audio ") and "a=recvonly" in audio

        stage = await _stage(http, server, space)
        assert len(stage) == 1, stage
        # The session id is the capability to end the session: listeners never see it.
        assert answer.session not in str(stage), stage
        deadline = time.monotonic() + 10
        while answer.pc.connectionState != "connected":
            assert time.monotonic() < deadline, answer.pc.connectionState
            await asyncio.sleep(0.05)

        auth = {"Authorization": f"Bearer {space['speaker_token']}"}
        session_url = server.base + answer.headers["Location"]
        for extra in ({}, {"If-Match": '"*"'}):  # trickle, then an ICE restart
            async with http.patch(
                session_url,
                data="a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n",
                headers={**auth, "Content-Type": "application/trickle-ice-sdpfrag", **extra},
            ) as resp:
                assert resp.status == 405
                assert resp.content_type == "application/json"
                body = json.loads(await resp.text())
                allow = _split(resp.headers["Allow"])
            assert body["status"] == 405 and "trickle ICE" in body["detail"], body
            assert "patch" not in allow and {"post", "delete"} <= allow, allow
        assert answer.pc.connectionState == "connected", "a refused PATCH leaves the call alone"

        # The publisher can ask whether its session is still there (and hearing it).
        deadline = time.monotonic() + 5
        while True:
            async with http.get(session_url, headers=auth) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["Cache-Control"] == "no-store"
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
                state = await resp.json()
            assert state["connection"] == "connected", state
            since = state["seconds_since_audio"]
            if since is not None and since < 1.0:
                break
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.1)
        async with http.get(session_url) as resp:
            assert resp.status == 401, "only the stage may look"
        async with http.get(session_url + "x", headers=auth) as resp:
            assert resp.status == 404

        async with http.delete(session_url, headers=auth) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert await _stage(http, server, space) == [], "DELETE takes the speaker off at once"
        async with http.delete(session_url, headers=auth) as resp:
            assert resp.status == 404, "a session is deleted once"
        async with http.get(session_url, headers=auth) as resp:
            assert resp.status == 404, "a deleted session is gone"
            assert "no such WHIP session" in (await resp.json())["detail"]
    finally:
        await answer.pc.close()


async def test_obs_like_offer_with_video(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = server.create_space("OBS")
    answer = await _post(http, server, space, _offering_pc(video=True, freq=750.0))
    try:
        offer_kinds = [ln.split()[0] for ln in answer.pc.localDescription.sdp.splitlines()
                       if ln.startswith("m=")]  # fmt: skip
        assert offer_kinds == ["m=audio", "m=video"]
        assert "H264/90000" in answer.pc.localDescription.sdp
        audio, video = answer.sections()
        assert audio[0].startswith("m=audio ") and "a=recvonly" in audio
        assert video[0].startswith("m=video ")
        assert "a=inactive" in video or video[0].split()[1] == "0", video
        # Nothing is ever sent on the declined video, so nothing waits to be decoded.
        assert answer.pc.getTransceivers()[1].currentDirection in ("inactive", None)

        deadline = time.monotonic() + 15
        while not (stage := await _stage(http, server, space)) or not stage[0]["talking"]:
            assert time.monotonic() < deadline, stage
            await asyncio.sleep(0.1)
        player = Player(http, server.base + space["playlist_url"])
        await player.run(2.5)
        power = tone_power(decode_mp4(player.media()), 750.0)
        assert power > 0.8, f"the audio of an offer with video must be heard: {power:.3f}"
    finally:
        await answer.pc.close()
    log = server.log()
    assert "Traceback" not in log, log
