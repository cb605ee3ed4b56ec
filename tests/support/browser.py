"""Debian's Chromium driven by Playwright, with a tone for a microphone and an ear in the page.

The speaker's microphone is a WAV file played by Chromium's fake capture device; a listener
page's ear is an AnalyserNode fed by the page's own `<audio id="player">` element, so what it
measures is what the page plays, after hls.js, MSE and the media element.
"""

from __future__ import annotations

import math
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
RATE = 48_000


def make_tone_wav(path: Path, freq: float = 1000.0, seconds: float = 30.0) -> Path:
    """A mono 16-bit 48 kHz sine at half scale: what `sox synth sine vol 0.5` writes."""
    t = np.arange(int(RATE * seconds)) / RATE
    pcm = (0.5 * 32767 * np.sin(2 * math.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())
    return path.resolve()


def chromium_args(tone_wav: Path) -> list[str]:
    # Measured flags (docs: TESTING-NOTES): the fake-UI flag grants the microphone, which is
    # also what makes Chromium offer its 127.0.0.1 ICE candidate on loopback.
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone_wav.resolve()}",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    ]


@asynccontextmanager
async def chromium(tone_wav: Path) -> AsyncIterator[Browser]:
    """A headless Chromium whose microphone plays ``tone_wav``; closed on exit."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=chromium_args(tone_wav), headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


# One MediaElementSource per element is all the Web Audio API allows, so the ear keeps it on
# `window.__ear.source` for anything else that wants to listen (the latency benchmark).
_INSTALL_EAR = """
(fftSize) => {
  if (window.__ear) return window.__ear.ctx.state;
  const ctx = new AudioContext();
  const source = ctx.createMediaElementSource(document.getElementById("player"));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = fftSize;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  analyser.connect(ctx.destination);  // still heard: the element now plays through Web Audio
  window.__ear = { ctx, source, analyser };
  ctx.resume();
  return ctx.state;
}
"""

_READ_EAR = """
() => {
  const { ctx, analyser } = window.__ear;
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(spectrum);
  const binHz = ctx.sampleRate / analyser.fftSize;
  let best = Math.ceil(50 / binHz);
  for (let i = best; i < spectrum.length; i++) if (spectrum[i] > spectrum[best]) best = i;
  // A parabola through the peak and its neighbours (in dB) places it between bins.
  const [a, b, c] = [spectrum[best - 1], spectrum[best], spectrum[best + 1]];
  const shift = a - 2 * b + c === 0 ? 0 : (0.5 * (a - c)) / (a - 2 * b + c);
  const wave = new Float32Array(analyser.fftSize);
  analyser.getFloatTimeDomainData(wave);
  let sum = 0;
  for (const v of wave) sum += v * v;
  return {
    frequency: (best + shift) * binHz,
    peak_db: b,
    rms: Math.sqrt(sum / wave.length),
    state: ctx.state,
    current_time: document.getElementById("player").currentTime,
  };
}
"""


@dataclass(frozen=True, slots=True)
class EarReading:
    frequency: float  # Hz, the loudest bin above 50 Hz
    peak_db: float  # dBFS of that bin
    rms: float  # of the last fftSize samples, full scale = 1
    state: str  # the AudioContext's state
    current_time: float  # the element's playback position, seconds

    def hears(self, freq: float, tolerance: float = 20.0, min_peak_db: float = -40.0) -> bool:
        # A steady half-scale tone peaks near -20 dB here; while it is still filling the
        # analyser's 341 ms window the peak is low and smeared, so wait for a clear one.
        return abs(self.frequency - freq) <= tolerance and self.peak_db >= min_peak_db


async def install_ear(page: Page, fft_size: int = 16384) -> str:
    """Route the page's `<audio id="player">` through an AnalyserNode; returns the context state."""
    state: str = await page.evaluate(_INSTALL_EAR, fft_size)
    return state


async def read_ear(page: Page) -> EarReading:
    value: dict[str, Any] = await page.evaluate(_READ_EAR)
    return EarReading(**value)


async def listen_for(
    page: Page, freq: float, within: float, tolerance: float = 20.0, min_peak_db: float = -40.0
) -> EarReading:
    """Poll the ear until it hears ``freq``; on timeout, fail with the last reading."""
    deadline = time.monotonic() + within
    reading = await read_ear(page)
    while not reading.hears(freq, tolerance, min_peak_db):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {freq:.0f} Hz heard within {within} s; last: {reading}")
        await page.wait_for_timeout(100)
        reading = await read_ear(page)
    return reading
