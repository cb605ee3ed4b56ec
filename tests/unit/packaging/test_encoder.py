"""AacEncoder: AAC-LC 48 kHz mono, frequencies survive, priming is exactly one frame."""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import pytest

from majlis.config import AAC_FRAME_SAMPLES, SAMPLE_RATE
from majlis.media.frames import Samples
from majlis.packaging.encoder import AAC_PRIMING_SAMPLES, AacEncoder
from tests.support.audio import dominant_frequency, tone_power
from tests.unit.packaging.tone import Encoded, encode


def bits(data: bytes) -> str:
    return "".join(f"{b:08b}" for b in data)


def decode_raw(packets: list[bytes], asc: bytes) -> Samples:
    """Decode AAC access units without a container: no edit list, priming included."""
    ctx: Any = av.CodecContext.create("aac", "r")
    ctx.extradata = asc
    out = [f.to_ndarray().reshape(-1) for p in packets for f in ctx.decode(av.Packet(p))]
    return np.concatenate(out).astype(np.float32)


def sine(freq: float, seconds: float, amplitude: float = 0.5) -> Samples:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_audio_specific_config_is_aac_lc_48k_mono() -> None:
    asc = bits(AacEncoder(48_000).audio_specific_config)
    assert int(asc[0:5], 2) == 2, "audioObjectType must be 2 (AAC-LC)"
    assert int(asc[5:9], 2) == 3, "samplingFrequencyIndex must be 3 (48000 Hz)"
    assert int(asc[9:13], 2) == 1, "channelConfiguration must be 1 (mono)"
    assert asc[13:16] == "000", "GASpecificConfig: 1024-sample frames, no extensions"
    if len(asc) > 16:
        # FFmpeg appends an explicit "no SBR" signal: syncExtensionType 0x2b7, SBR, absent.
        assert int(asc[16:27], 2) == 0x2B7
        assert int(asc[27:32], 2) == 5
        assert asc[32] == "0"


@pytest.mark.parametrize("freq", [220.0, 1000.0, 3150.0])
def test_sine_keeps_its_frequency(freq: float) -> None:
    enc = encode(sine(freq, 1.0))
    decoded = decode_raw(enc.packets, enc.asc)
    steady = decoded[4 * AAC_FRAME_SAMPLES :]
    assert abs(dominant_frequency(steady) - freq) < 3.0
    # FFmpeg's default (twoloop) coder leaves sidebands ~18 dB down on some pure tones
    # (0.93 of the energy in band at 1 kHz, 48 kbit/s): the tone is still unmistakable.
    assert tone_power(steady, freq) > 0.9
    # The level survives within 2 dB (0.5 amplitude = -9 dBFS RMS).
    rms = float(np.sqrt(np.mean(np.square(steady, dtype=np.float64))))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.25)


def test_priming_is_exactly_one_frame(encoded_tone: Encoded) -> None:
    decoded = decode_raw(encoded_tone.packets, encoded_tone.asc)
    # Without an edit list, every input sample comes out AAC_PRIMING_SAMPLES late: the
    # pipeline's timestamps and the init segment's edit list both rely on this figure.
    onset = int(np.argmax(np.abs(decoded) > 0.25))
    first_peak_in_source = int(np.argmax(np.abs(encoded_tone.source) > 0.25))
    assert abs(onset - (first_peak_in_source + AAC_PRIMING_SAMPLES)) <= 4, onset
    assert AAC_PRIMING_SAMPLES == 1024


def test_packets_come_one_frame_behind_and_partial_frames_wait() -> None:
    encoder = AacEncoder(48_000)
    # 1023 samples: not a frame yet.
    assert encoder.encode(sine(440, 1.0)[:1023]) == []
    # Eleven whole frames fed in odd sizes: one frame is held back as the priming delay.
    signal = sine(440, 1.0)
    packets = encoder.encode(signal[1023:1024])
    for start in range(1024, 11 * AAC_FRAME_SAMPLES, 777):
        packets += encoder.encode(signal[start : min(start + 777, 11 * AAC_FRAME_SAMPLES)])
    assert len(packets) == 11 - AAC_PRIMING_SAMPLES // AAC_FRAME_SAMPLES
    assert all(isinstance(p, bytes) and p for p in packets)


def test_bitrate_is_applied() -> None:
    low = encode(sine(1000, 2.0) + sine(5000, 2.0, 0.2), bitrate=32_000)
    high = encode(sine(1000, 2.0) + sine(5000, 2.0, 0.2), bitrate=64_000)
    assert low.bitrate == 32_000
    size_low = sum(map(len, low.packets))
    size_high = sum(map(len, high.packets))
    assert size_low < size_high
    seconds = len(high.packets) * AAC_FRAME_SAMPLES / SAMPLE_RATE
    assert size_high * 8 / seconds <= 64_000 * 1.2
