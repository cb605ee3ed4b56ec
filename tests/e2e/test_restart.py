"""A server restart keeps a live space live: the recording continues after a discontinuity."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import m3u8

from tests.support.audio import decode_mp4, tone_power
from tests.support.server import majlis_server, stop
from tests.support.whip import ToneTrack, publish


async def _talk(base: str, space: dict[str, str], freq: float, seconds: float) -> None:
    async with aiohttp.ClientSession() as http:
        pub = await publish(http, base, space["whip_url"], space["host_token"], ToneTrack(freq))
        await asyncio.sleep(seconds)
        await pub.pc.close()


async def _playlist(http: aiohttp.ClientSession, url: str) -> m3u8.M3U8:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return m3u8.loads(await resp.text())


async def test_restart_continues_recording_with_discontinuity(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with majlis_server(data) as first:
        space = first.create_space("Survives restarts")
        await _talk(first.base, space, 440.0, 3.0)
        url = first.base + space["playlist_url"]
        async with aiohttp.ClientSession() as http:
            before = await _playlist(http, url)
        assert stop(first.process) == 0, first.log()
    announced = [s.uri for s in before.segments if s.uri]
    assert len(announced) >= 2

    with majlis_server(data) as second:
        url = second.base + space["playlist_url"]
        async with aiohttp.ClientSession() as http:
            state = await (await http.get(second.base + space["state_url"])).json()
            assert state["status"] == "live"
            restored = await _playlist(http, url)
            # Everything announced before the restart is still there (plus the closed tail).
            assert [s.uri for s in restored.segments][: len(announced)] == announced
            await _talk(second.base, space, 880.0, 3.0)
            async with http.post(
                f"{second.base}/api/spaces/{space['id']}/end",
                headers={"Authorization": f"Bearer {space['host_token']}"},
            ) as resp:
                assert resp.status == 200
            replay = await _playlist(http, url)
            assert replay.is_endlist
            flags = [s.discontinuity for s in replay.segments]
            assert flags.count(True) == 1, "one discontinuity where the restart happened"
            cut = flags.index(True)
            base = url.rsplit("/", 1)[0]
            init = await (await http.get(f"{base}/init.mp4")).read()

            async def audio(segments: list[m3u8.Segment]) -> bytes:
                blobs = [await (await http.get(f"{base}/{s.uri}")).read() for s in segments]
                return init + b"".join(blobs)

            old = decode_mp4(await audio(replay.segments[:cut]))
            new = decode_mp4(await audio(replay.segments[cut:]))
    assert tone_power(old, 440.0) > 0.3 and tone_power(old, 880.0) < 0.01
    assert tone_power(new, 880.0) > 0.3 and tone_power(new, 440.0) < 0.01
