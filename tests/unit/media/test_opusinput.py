"""OpusInput: packets queued from any thread, decoded by the puller, corrupt ones skipped."""

from __future__ import annotations

import fractions
import threading
import time

import av
import numpy as np
from aiortc.codecs.opus import OpusEncoder

from majlis.media.frames import SAMPLE_RATE, TICK_SAMPLES
from majlis.media.inputbuffer import InputBuffer
from majlis.media.opusinput import MAX_PENDING_PACKETS, DecodeStats, OpusInput
from tests.support.audio import dominant_frequency, tone_power


def opus_packets(freq: float, frames: int, layout: str = "stereo") -> list[bytes]:
    """20 ms Opus packets of a tone, made by aiortc's encoder as a WebRTC sender makes them."""
    encoder = OpusEncoder()
    t = np.arange(frames * TICK_SAMPLES) / SAMPLE_RATE
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    channels = 2 if layout == "stereo" else 1
    packets: list[bytes] = []
    for k in range(frames):
        chunk = np.repeat(pcm[k * TICK_SAMPLES : (k + 1) * TICK_SAMPLES], channels)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = k * TICK_SAMPLES
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        encoded, _ = encoder.encode(frame)
        packets += encoded
    return packets


def play(source: OpusInput, packets: list[bytes], burst: int = 1) -> np.ndarray:
    """Packets arrive `burst` at a time, one mixer tick after each arrival; then 5 more ticks."""
    out: list[np.ndarray] = []
    for k in range(0, len(packets), burst):
        for packet in packets[k : k + burst]:
            source.push_packet(packet)
        out += [source.pull(TICK_SAMPLES) for _ in range(burst)]
    return np.concatenate(out)


def test_decodes_a_stereo_sender_to_mono_at_48k() -> None:
    source = OpusInput(InputBuffer())
    # Bursts of 5 packets (100 ms): a mix thread that was held up catches up whole.
    out = play(source, opus_packets(660, 50), burst=5)
    # The buffer primes 40 ms, then plays; the Opus decoder's warm-up is at the start.
    steady = out[TICK_SAMPLES * 10 :]
    assert abs(dominant_frequency(steady) - 660) < 5
    assert tone_power(steady, 660) > 0.9
    assert 0.15 < float(np.max(np.abs(steady))) < 0.45
    assert source.stats.packets == 50 and source.stats.errors == 0
    assert source.stats.cpu_seconds > 0


def test_packets_arriving_between_pulls_are_decoded_in_order() -> None:
    source = OpusInput(InputBuffer())
    steady = play(source, opus_packets(440, 60))[TICK_SAMPLES * 10 :]
    assert tone_power(steady, 440) > 0.9


def test_a_corrupt_packet_costs_only_itself() -> None:
    stats = DecodeStats()
    source = OpusInput(InputBuffer(), stats)
    packets = opus_packets(880, 40)
    # A TOC byte announcing a code-3 packet with an impossible frame count.
    packets.insert(20, bytes([0x03, 0xFF]) + b"\x00" * 10)
    out = play(source, packets)
    assert stats.errors == 1 and stats.packets == 40
    assert tone_power(out[TICK_SAMPLES * 10 :], 880) > 0.9


def test_empty_oversized_and_excess_packets_are_refused_not_queued() -> None:
    stats = DecodeStats()
    source = OpusInput(InputBuffer(), stats)
    source.push_packet(b"")
    source.push_packet(b"\x00" * 10_000)
    packet = opus_packets(440, 1)[0]
    for _ in range(MAX_PENDING_PACKETS + 7):
        source.push_packet(packet)
    assert stats.dropped == 2 + 7
    source.pull(TICK_SAMPLES)
    assert stats.packets == MAX_PENDING_PACKETS


def test_pushes_from_another_thread_while_pulling() -> None:
    source = OpusInput(InputBuffer())
    packets = opus_packets(550, 100)
    done = threading.Event()

    def network() -> None:
        for packet in packets:
            source.push_packet(packet)
            time.sleep(0.002)
        done.set()

    sender = threading.Thread(target=network)
    sender.start()
    out: list[np.ndarray] = []
    deadline = time.monotonic() + 30
    while not (done.is_set() and source.pending == 0) and time.monotonic() < deadline:
        out.append(source.pull(TICK_SAMPLES))
        time.sleep(0.001)
    sender.join()
    # Every packet was either decoded or refused as excess (a stalled puller on a busy
    # machine), none lost or decoded twice; and what was decoded is the tone.
    assert source.stats.packets + source.stats.dropped == 100 and source.stats.packets > 0
    assert source.stats.errors == 0
    assert tone_power(np.concatenate(out), 550) > 0.5
