"""Take Opus packets from aiortc before its decoder thread sees them.

aiortc's RTCRtpReceiver puts each frame its jitter buffer completes into a queue that a
decoder thread of its own drains (one thread per speaker, waking for every 20 ms frame, and
handing every decoded frame back to the event loop). The mixer's thread decodes far more
cheaply (see majlis.media.opusinput), so the receiver's queue is replaced by this tap:
Opus frames go straight to the speaker's OpusInput; anything else (another codec, and the
None that stops the receiver) takes aiortc's own path, so the track still ends normally
and a G.711 publisher is still decoded by aiortc.

This reaches into a private attribute of aiortc's receiver; pyproject pins aiortc's minor
version and tests/unit/ingest/test_opustap.py fails if the attribute moves.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

RECEIVER_QUEUE_ATTRIBUTE = "_RTCRtpReceiver__decoder_queue"


class OpusTap:
    def __init__(self, on_opus: Callable[[bytes], None]) -> None:
        self._on_opus = on_opus
        self._aiortc_path: queue.Queue[Any] = queue.Queue()

    # aiortc calls put() on the event loop from RTCRtpReceiver._handle_rtp_packet.
    def put(self, item: Any) -> None:
        if item is not None:
            codec, frame = item
            if codec.name.lower() == "opus":
                self._on_opus(bytes(frame.data))
                return
        self._aiortc_path.put(item)

    # aiortc's decoder thread blocks here; it only wakes for what put() let through.
    def get(self) -> Any:
        return self._aiortc_path.get()


def install(receiver: Any, on_opus: Callable[[bytes], None]) -> bool:
    """Put a tap on the receiver before it starts (its decoder thread takes the queue then).

    Returns False, leaving aiortc's decoding in place, if the receiver does not look as
    expected: slower, but never silent.
    """
    current = getattr(receiver, RECEIVER_QUEUE_ATTRIBUTE, None)
    if not isinstance(current, queue.Queue) or not current.empty():
        return False
    setattr(receiver, RECEIVER_QUEUE_ATTRIBUTE, OpusTap(on_opus))
    return True
