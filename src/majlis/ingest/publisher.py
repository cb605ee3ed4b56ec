"""One speaker's WebRTC connection: answer the WHIP offer, feed its audio to the mixer.

Opus packets are taken from aiortc before its decoder (majlis.ingest.opustap) and queued
for the mix thread, which decodes them (majlis.media.opusinput). Another codec aiortc can
receive (G.711) is still decoded by aiortc; its frames reach this module on the event loop,
where they are reshaped (mono float) and pushed into the speaker's bounded input buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from majlis.clock import Clock
from majlis.errors import BadRequest
from majlis.ingest import opustap
from majlis.media.frames import SAMPLE_RATE, s16_interleaved_to_mono
from majlis.media.opusinput import OpusInput

log = logging.getLogger(__name__)

# A new connection gets this long to deliver its first audio before it counts as stalled.
CONNECT_GRACE_S = 15.0
WATCH_INTERVAL_S = 0.5


class Publisher:
    def __init__(
        self,
        publisher_id: str,
        source: OpusInput,
        clock: Clock,
        stall_timeout: float,
        on_gone: Callable[[str, str], None],
    ) -> None:
        self.id = publisher_id
        self.source = source
        self.buffer = source.buffer
        self.clock = clock
        self.stall_timeout = stall_timeout
        self._on_gone = on_gone
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.created_at = clock.monotonic()
        self.last_audio_at: float | None = None
        self.frames = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._resampler: Any = None

    async def answer(self, offer_sdp: str) -> str:
        self.pc.on("track", self._on_track)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:  # aiortc raises ValueError, KeyError, … on bad SDP
            raise BadRequest(f"SDP offer rejected: {str(exc) or type(exc).__name__}") from None
        self._choose_directions()
        try:
            answer = await self.pc.createAnswer()
        except Exception as exc:  # what aiortc's parser let through can still fail here
            raise BadRequest(
                f"SDP offer cannot be answered: {str(exc) or type(exc).__name__}"
            ) from None
        await self.pc.setLocalDescription(answer)
        self._tasks.append(asyncio.create_task(self._watch(), name=f"watch-{self.id}"))
        return str(self.pc.localDescription.sdp)

    def _choose_directions(self) -> None:
        # Receive the first audio section; answer everything else (OBS's video, a second
        # microphone) as inactive so it is never decoded.
        audio_taken = False
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "audio" and not audio_taken:
                transceiver.direction = "recvonly"
                audio_taken = True
                if not opustap.install(transceiver.receiver, self._on_opus):
                    log.warning("publisher %s: Opus decoded by aiortc (receiver changed)", self.id)
            else:
                transceiver.direction = "inactive"
        if not audio_taken:
            raise BadRequest("SDP offer has no audio section that can be received")

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio" and not any(t.get_name().startswith("audio") for t in self._tasks):
            self._tasks.append(asyncio.create_task(self._consume(track), name=f"audio-{self.id}"))

    def _on_opus(self, packet: bytes) -> None:
        self.source.push_packet(packet)
        self.frames += 1
        self.last_audio_at = self.clock.monotonic()

    async def _consume(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.buffer.push(self._to_mono(frame))
            self.frames += 1
            self.last_audio_at = self.clock.monotonic()

    def _to_mono(self, frame: Any) -> Any:
        if frame.format.name == "s16" and frame.sample_rate == SAMPLE_RATE:
            channels = len(frame.layout.channels)
            return s16_interleaved_to_mono(frame.to_ndarray().reshape(-1), channels)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        joined = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return s16_interleaved_to_mono(joined, 1)

    async def _watch(self) -> None:
        while not self._closed:
            await asyncio.sleep(WATCH_INTERVAL_S)
            reason = self._gone_reason()
            if reason:
                log.info("publisher %s dropped: %s", self.id, reason)
                self._on_gone(self.id, reason)
                return

    def _gone_reason(self) -> str | None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            return f"connection {state}"
        now = self.clock.monotonic()
        if self.last_audio_at is None:
            if now - self.created_at > max(CONNECT_GRACE_S, self.stall_timeout):
                return "no audio arrived after connecting"
            return None
        if now - self.last_audio_at > self.stall_timeout:
            return f"no audio for {self.stall_timeout:.0f} s"
        return None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        for task in self._tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        try:
            await self.pc.close()
        except Exception as exc:  # a peer aiortc left half set up: closing must not mask the cause
            log.warning("publisher %s: closing the peer connection failed: %r", self.id, exc)
