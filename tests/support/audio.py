"""Measuring audio: decode fMP4 with PyAV and find tones with an FFT."""

from __future__ import annotations

import io

import av
import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]
RATE = 48_000


def decode_mp4(data: bytes) -> Samples:
    """Decode init + segments/parts (fMP4 AAC) to mono float samples at 48 kHz."""
    with av.open(io.BytesIO(data)) as container:
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def tone_power(samples: Samples, freq: float, rate: int = RATE, width: float = 15.0) -> float:
    """Fraction of the signal's energy within ``width`` Hz of ``freq``."""
    if samples.size < rate // 10:
        return 0.0
    windowed = samples * np.hanning(samples.size)
    spectrum = np.abs(np.fft.rfft(windowed)) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    total = float(spectrum[(freqs > 50) & (freqs < 8000)].sum()) or 1e-20
    band = float(spectrum[np.abs(freqs - freq) <= width].sum())
    return band / total


def dominant_frequency(samples: Samples, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    spectrum[freqs < 50] = 0
    return float(freqs[int(np.argmax(spectrum))])


def rms(samples: Samples) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
