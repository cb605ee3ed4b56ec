"""The Opus tap on aiortc's receiver: Opus to the mix thread, the rest to aiortc's decoder."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from majlis.ingest import opustap

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
PCMU = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, channels=1, payloadType=0)


def receiver() -> RTCRtpReceiver:
    transport = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    return RTCRtpReceiver("audio", transport)


async def test_aiortc_receiver_still_has_the_queue_the_tap_replaces() -> None:
    # If aiortc renames its decoder queue, install() refuses and audio falls back to
    # aiortc's own decoding: this test is what notices.
    rx = receiver()
    assert isinstance(getattr(rx, opustap.RECEIVER_QUEUE_ATTRIBUTE), queue.Queue)
    got: list[bytes] = []
    assert opustap.install(rx, got.append)
    assert isinstance(getattr(rx, opustap.RECEIVER_QUEUE_ATTRIBUTE), opustap.OpusTap)


async def test_opus_goes_to_the_callback_and_the_rest_to_aiortc() -> None:
    got: list[bytes] = []
    tap = opustap.OpusTap(got.append)
    tap.put((OPUS, JitterFrame(b"\x01\x02", 960)))
    pcmu_frame = JitterFrame(b"\xff" * 160, 160)
    tap.put((PCMU, pcmu_frame))
    tap.put(None)
    assert got == [b"\x01\x02"]
    assert tap.get() == (PCMU, pcmu_frame)
    # The None that stops the receiver reaches aiortc's worker, which ends the track.
    assert tap.get() is None


async def test_install_refuses_a_receiver_it_does_not_recognise() -> None:
    class Other:
        pass

    assert not opustap.install(Other(), lambda _: None)
    busy: Any = receiver()
    getattr(busy, opustap.RECEIVER_QUEUE_ATTRIBUTE).put("already started")
    assert not opustap.install(busy, lambda _: None)
    await asyncio.sleep(0)
