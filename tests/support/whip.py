"""A WHIP publisher made of aiortc, sending a tone that a test can switch on and off."""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import aiohttp
import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from majlis.ingest.ice import configure_ice

RATE = 48_000
FRAME = 960


class ToneTrack(AudioStreamTrack):
    """A sine tone paced in real time; ``switch`` turns it on and off, ``onsets`` records when."""

    def __init__(self, freq: float, amplitude: float = 0.3, on: bool = True) -> None:
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        # Not `on`: that name is the event-emitter method aiortc's tracks inherit.
        self.enabled = on
        self.onsets: list[float] = []  # perf_counter() when a frame with the tone first left
        self._pending_onset = on
        self._sample = 0
        self._start: float | None = None

    def switch(self, on: bool) -> None:
        if on and not self.enabled:
            self._pending_onset = True
        self.enabled = on

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.perf_counter()
        due = self._start + self._sample / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(FRAME) + self._sample) / RATE
        wave = (
            self.amplitude * np.sin(2 * np.pi * self.freq * t) if self.enabled else np.zeros(FRAME)
        )
        if self.enabled and self._pending_onset:
            self.onsets.append(time.perf_counter())
            self._pending_onset = False
        pcm = (wave * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sample
        frame.time_base = fractions.Fraction(1, RATE)
        self._sample += FRAME
        return frame


@dataclass
class Publisher:
    pc: RTCPeerConnection
    location: str
    token: str
    track: ToneTrack
    answer: str = field(repr=False)


async def publish(
    session: aiohttp.ClientSession,
    base: str,
    whip_url: str,
    token: str,
    track: ToneTrack,
    name: str = "",
    codec: str | None = None,
) -> Publisher:
    """`codec` ("PCMU", "opus", …) offers that codec only; by default aiortc offers all."""
    configure_ice(("127.0.0.1",))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(track, direction="sendonly")
    if codec is not None:
        offered = RTCRtpSender.getCapabilities("audio").codecs
        transceiver.setCodecPreferences(
            [c for c in offered if c.mimeType.lower() == f"audio/{codec.lower()}"]
        )
    await pc.setLocalDescription(await pc.createOffer())
    url = base + whip_url + (f"?name={name}" if name else "")
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with session.post(url, data=pc.localDescription.sdp, headers=headers) as resp:
        body = await resp.text()
        if resp.status != 201:
            await pc.close()
            raise AssertionError(f"WHIP POST answered {resp.status}: {body}")
        location = resp.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    return Publisher(pc, location, token, track, body)


async def unpublish(session: aiohttp.ClientSession, base: str, pub: Publisher) -> int:
    headers = {"Authorization": f"Bearer {pub.token}"}
    async with session.delete(base + pub.location, headers=headers) as resp:
        status = resp.status
    await pub.pc.close()
    return status
