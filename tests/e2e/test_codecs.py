"""Opus is decoded on the mix thread; a G.711 (PCMU) publisher still goes through aiortc's
decoder. Both are heard in the same mix, and the answer names the codec each one got."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.audio import decode_mp4, tone_power
from tests.support.player import Player
from tests.support.server import RunningServer
from tests.support.whip import ToneTrack, publish, unpublish


async def test_opus_and_pcmu_speakers_are_both_in_the_mix(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = server.create_space("Codecs")
    opus = await publish(
        http, server.base, space["whip_url"], space["host_token"], ToneTrack(440), "o", "opus"
    )
    # G.711 carries 8 kHz audio: a tone under 4 kHz survives it.
    pcmu = await publish(
        http, server.base, space["whip_url"], space["speaker_token"], ToneTrack(1000), "p", "PCMU"
    )
    try:
        assert "opus/48000" in opus.answer and "PCMU/8000" not in opus.answer
        assert "PCMU/8000" in pcmu.answer and "opus/48000" not in pcmu.answer
        await asyncio.sleep(1.5)
        player = Player(http, server.base + space["playlist_url"])
        await player.run(3.0)
        samples = decode_mp4(player.media())
        assert samples.size > 48_000
        assert tone_power(samples, 440.0) > 0.2
        assert tone_power(samples, 1000.0) > 0.2
    finally:
        for pub in (opus, pcmu):
            await unpublish(http, server.base, pub)
            await pub.pc.close()
