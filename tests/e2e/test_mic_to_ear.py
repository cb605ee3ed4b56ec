"""Mic to ear through the public interfaces: WHIP in, LL-HLS out, replay at the end."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import defaultdict

import aiohttp
import m3u8

from tests.support.audio import decode_mp4, tone_power
from tests.support.player import Player
from tests.support.server import RunningServer
from tests.support.whip import ToneTrack, publish, unpublish

TONES = (440.0, 660.0, 880.0)
# Each tone carries about a third of the energy when all three play; absent, ~0.
PRESENT = 0.15
ABSENT = 0.01


def _powers(media: bytes) -> dict[float, float]:
    samples = decode_mp4(media)
    assert samples.size > 48_000, f"only {samples.size} samples decoded"
    return {f: tone_power(samples, f) for f in TONES}


async def test_three_speakers_heard_then_one_leaves_then_replay(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = server.create_space("Mic to ear")
    tokens = (space["host_token"], space["speaker_token"], space["speaker_token"])
    pubs = [
        await publish(http, server.base, space["whip_url"], tok, ToneTrack(f), name=f"s{int(f)}")
        for f, tok in zip(TONES, tokens, strict=True)
    ]
    playlist_url = server.base + space["playlist_url"]
    received: dict[str, bytes] = {}
    try:
        await asyncio.sleep(1.5)  # ICE + DTLS + jitter buffer prime
        player = Player(http, playlist_url)
        await player.run(4.0)
        received.update({p.uri: p.data for p in player.parts})
        assert len(player.parts) >= 12, "a live player should get ~4.7 parts per second"
        powers = _powers(player.media())
        for f in TONES:
            assert powers[f] > PRESENT, f"{f} Hz missing from the mix: {powers}"

        async with http.get(server.base + space["state_url"]) as resp:
            state = await resp.json()
        assert {s["name"] for s in state["stage"]} == {"s440", "s660", "s880"}
        assert all(s["talking"] for s in state["stage"])

        assert await unpublish(http, server.base, pubs.pop()) == 200
        await asyncio.sleep(0.5)
        player = Player(http, playlist_url)
        await player.run(3.0)
        received.update({p.uri: p.data for p in player.parts})
        powers = _powers(player.media())
        assert powers[880.0] < ABSENT, f"880 Hz still heard after its speaker left: {powers}"
        assert powers[440.0] > PRESENT and powers[660.0] > PRESENT, powers
    finally:
        for pub in pubs:
            await pub.pc.close()

    async with http.post(
        f"{server.base}/api/spaces/{space['id']}/end",
        headers={"Authorization": f"Bearer {space['host_token']}"},
    ) as resp:
        assert resp.status == 200, await resp.text()

    async with http.get(playlist_url) as resp:
        assert resp.status == 200
        replay = m3u8.loads(await resp.text())
    assert replay.is_endlist
    assert replay.playlist_type == "vod"
    numbers = [int(re.search(r"(\d+)\.m4s", s.uri).group(1)) for s in replay.segments]  # type: ignore[union-attr]
    assert numbers == list(range(len(numbers))), "the replay must hold every segment in order"
    assert replay.media_sequence == 0

    # The recording IS the live stream: every segment heard live, byte for byte.
    parts_by_segment: dict[int, dict[int, bytes]] = defaultdict(dict)
    for uri, data in received.items():
        msn, index = re.search(r"p/(\d+)\.(\d+)\.m4s", uri).groups()  # type: ignore[union-attr]
        parts_by_segment[int(msn)][int(index)] = data
    complete = {m: p for m, p in parts_by_segment.items() if sorted(p) == list(range(5))}
    assert len(complete) >= 4
    base = playlist_url.rsplit("/", 1)[0]
    for msn, parts in complete.items():
        async with http.get(f"{base}/s/{msn}.m4s") as resp:
            assert resp.status == 200
            assert "immutable" in resp.headers["Cache-Control"]
            recorded = await resp.read()
        assert recorded == b"".join(parts[i] for i in range(5)), f"segment {msn} differs"


async def test_ffmpeg_reads_the_live_playlist(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: object
) -> None:
    space = server.create_space("Third-party listener")
    pubs = [
        await publish(http, server.base, space["whip_url"], space["speaker_token"], ToneTrack(f))
        for f in (440.0, 880.0)
    ]
    try:
        await asyncio.sleep(2.0)
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-nostdin", "-v", "error", "-i", server.base + space["playlist_url"],
            "-t", "3", "-ac", "1", "-ar", "48000", "-f", "s16le", "-",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        for pub in pubs:
            await pub.pc.close()
    assert proc.returncode == 0, err.decode()
    import numpy as np

    samples = np.frombuffer(out, dtype=np.int16).astype(np.float32) / 32768
    assert samples.size >= 48_000 * 2.5, f"ffmpeg recorded only {samples.size} samples"
    assert tone_power(samples, 440.0) > PRESENT
    assert tone_power(samples, 880.0) > PRESENT
    assert tone_power(samples, 660.0) < ABSENT
