"""Latency at the ear and join time, measured in Chromium playing the real space page.

(a) Ear latency. An aiortc WHIP publisher switches a 1000 Hz tone on and off; a listener
    page (the space page, hls.js, its Play button) routes its `<audio>` element into an
    AnalyserNode polled every 10 ms. Each onset's time is when its first sample leaves the
    page's audio output (AudioContext.getOutputTimestamp), on the epoch clock
    (`performance.timeOrigin + …`); the publisher's onsets are its perf_counter() instants
    moved to time.time() in the same process. Same machine, same wall clock.
(b) Join time. Fresh listener pages on a space where the tone never stops: from the page's
    first request for the media playlist (Resource Timing) to the first 10 ms poll at which
    the analyser hears the tone.

    python -m bench ear
"""

from __future__ import annotations

import asyncio
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from playwright.async_api import Browser, Page
from tests.support.browser import chromium, install_ear, make_tone_wav
from tests.support.server import majlis_server
from tests.support.whip import ToneTrack, publish, unpublish

from bench.results import update

TONE_HZ = 1000.0
TONE_AMPLITUDE = 0.3
CYCLES = 24
ON_S = 1.2
OFF_S = 1.8
# Jitter on every on/off length, so onsets fall at every position inside a part.
JITTER_S = 0.15
SEED = 1000
JOINS = 12
LISTENERS = 3
JOIN_WINDOW_S = 5  # space.js: JOIN_WINDOW_S
# Listeners join a space that is already talking; its very first second is another story.
LIVE_SEGMENTS = 3
TARGET_EAR_P95_S = 1.5
TARGET_JOIN_P95_S = 1.0
MIN_ONSETS = 20
# Levels on the analyser's scale (the mix reaches the page at unity gain: a 0.3 tone peaks
# at 0.3). ON is 10 dB under the tone, well above AAC's pre-echo; OFF ends an onset.
ON_LEVEL = TONE_AMPLITUDE / 3
OFF_LEVEL = 0.02
EDGE_LEVEL = 0.03  # |sample| that marks the tone's first sample inside a 10 ms window

# A second, short analyser (1024 samples ≈ 21 ms) on the ear's source: a 16384-sample
# window would blur an onset over 341 ms. For each onset the window's first loud sample is
# mapped to the moment it leaves the audio output; 400 ms later the ear's long FFT checks
# the onset really is the tone.
_WATCH = """
([onLevel, offLevel, edgeLevel]) => {
  const { ctx, source, analyser: longAnalyser } = window.__ear;
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const wave = new Float32Array(analyser.fftSize);
  const spectrum = new Float32Array(longAnalyser.frequencyBinCount);
  const player = document.getElementById("player");
  const watch = { onsets: [], waiting: 0, firstAudible: null, polls: 0 };
  let on = false;
  player.addEventListener("waiting", () => { watch.waiting += 1; });
  const epoch = (perfMs) => performance.timeOrigin + perfMs;
  const dominant = () => {
    longAnalyser.getFloatFrequencyData(spectrum);
    let best = 20;
    for (let i = best; i < spectrum.length; i++) if (spectrum[i] > spectrum[best]) best = i;
    return best * ctx.sampleRate / longAnalyser.fftSize;
  };
  setInterval(() => {
    const polledAt = performance.now();
    analyser.getFloatTimeDomainData(wave);
    const stamp = ctx.getOutputTimestamp();
    const newest = ctx.currentTime;  // context time just after the newest analysed sample
    watch.polls += 1;
    let peak = 0, first = -1;
    for (let i = 0; i < wave.length; i++) {
      const a = Math.abs(wave[i]);
      if (a > peak) peak = a;
      if (first < 0 && a > edgeLevel) first = i;
    }
    if (!on && peak > onLevel) {
      on = true;
      const sampleTime = newest - (wave.length - first) / ctx.sampleRate;
      const onset = {
        polled_ms: epoch(polledAt),
        output_ms: stamp.performanceTime > 0
          ? epoch(stamp.performanceTime + (sampleTime - stamp.contextTime) * 1000) : null,
        player_time: player.currentTime,
        frequency: null,
      };
      watch.onsets.push(onset);
      if (watch.firstAudible === null) watch.firstAudible = polledAt;
      setTimeout(() => { onset.frequency = dominant(); }, 400);
    } else if (on && peak < offLevel) {
      on = false;
    }
  }, 10);
  window.__watch = watch;
}
"""

# hls.js's own view of the session (latency behind the live edge, its target, stalls), read
# without touching the page's code: the Hls class is wrapped as the vendored script defines it.
_HLS_PROBE = """
Object.defineProperty(window, "Hls", {
  configurable: true,
  get() { return this.__probedHls; },
  set(Hls) {
    this.__probedHls = class extends Hls {
      constructor(config) {
        super(config);
        window.__hls = this;
        window.__stalls = 0;
        this.on(Hls.Events.ERROR, (_, data) => {
          if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) window.__stalls += 1;
        });
      }
    };
  },
});
"""

_HLS_STATE = """
() => ({
  latency_s: window.__hls.latency,
  target_latency_s: window.__hls.targetLatency,
  playback_rate: document.getElementById("player").playbackRate,
  stalls: window.__stalls,
})
"""

_PLAYLIST_REQUESTED = """
() => {
  const entries = performance.getEntriesByType("resource")
    .filter((e) => new URL(e.name).pathname.endsWith("/audio.m3u8"));
  return entries.length ? Math.min(...entries.map((e) => e.startTime)) : null;
}
"""


def stats(values: list[float]) -> dict[str, float]:
    """n, min, p50, p95, max, mean; percentiles are numpy's (linear interpolation)."""
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64)
    figures = {
        "min": arr.min(),
        "p50": np.percentile(arr, 50),
        "p95": np.percentile(arr, 95),
        "max": arr.max(),
        "mean": arr.mean(),
    }
    return {"n": len(values), **{k: round(float(v), 4) for k, v in figures.items()}}


def wall_minus_perf() -> float:
    """time.time() - time.perf_counter(), read where the two reads are closest together."""
    best, value = math.inf, 0.0
    for _ in range(20):
        a = time.perf_counter()
        wall = time.time()
        b = time.perf_counter()
        if b - a < best:
            best, value = b - a, wall - (a + b) / 2
    return value


async def _wait(page: Page, expression: str, within: float, what: str) -> Any:
    """Poll a page expression until it is truthy; on timeout say what was awaited."""
    deadline = time.monotonic() + within
    while not (value := await page.evaluate(expression)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {within} s")
        await asyncio.sleep(0.02)
    return value


async def _open_listener(browser: Browser, url: str) -> Page:
    context = await browser.new_context()
    page = await context.new_page()
    await page.add_init_script(_HLS_PROBE)
    await page.goto(url)
    await install_ear(page)
    await page.evaluate(_WATCH, [ON_LEVEL, OFF_LEVEL, EDGE_LEVEL])
    await page.click("#play")
    return page


def _match(published: list[float], heard: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each published onset with the first onset heard after it and before the next one."""
    pairs = []
    for i, sent in enumerate(published):
        until = published[i + 1] if i + 1 < len(published) else math.inf
        match = next((o for o in heard if sent <= o["polled_ms"] / 1000 < until), None)
        if match is not None:
            pairs.append({**match, "sent": sent})
    return pairs


def _latencies(pairs: list[dict[str, Any]]) -> list[float]:
    # The output timestamp is the ear; the poll time is the fallback where it is missing.
    return [(p["output_ms"] or p["polled_ms"]) / 1000 - p["sent"] for p in pairs]


async def ear_latency(browser: Browser, url: str, track: ToneTrack) -> dict[str, Any]:
    # Several listeners at once: each joins at its own moment, so each sits at its own
    # position against the part boundaries, which is what varies from one listener to the next.
    pages = [await _open_listener(browser, url) for _ in range(LISTENERS)]
    for page in pages:  # the tone is off: they play silence until the switching starts
        await _wait(page, "document.getElementById('player').currentTime > 1", 15, "playback")
    await asyncio.sleep(JOIN_WINDOW_S)  # let space.js finish joining at hls.js's target
    hls_start = [await page.evaluate(_HLS_STATE) for page in pages]
    offset = wall_minus_perf()
    rng = random.Random(SEED)
    for _ in range(CYCLES):
        track.switch(True)
        await asyncio.sleep(ON_S + rng.uniform(-JITTER_S, JITTER_S))
        track.switch(False)
        await asyncio.sleep(OFF_S + rng.uniform(-JITTER_S, JITTER_S))
    await asyncio.sleep(0.5)  # the last onset's frequency check runs 400 ms after it
    watches = [await page.evaluate("window.__watch") for page in pages]
    hls_end = [await page.evaluate(_HLS_STATE) for page in pages]
    drift = wall_minus_perf() - offset
    for page in pages:
        await page.context.close()

    published = [t + offset for t in track.onsets]
    pairs = [_match(published, watch["onsets"]) for watch in watches]
    every = [v for one in pairs for v in _latencies(one)]
    at_poll = [p["polled_ms"] / 1000 - p["sent"] for one in pairs for p in one]
    verified = sum(
        1 for one in pairs for p in one if p["frequency"] and abs(p["frequency"] - TONE_HZ) < 20
    )
    measured = sum(len(one) for one in pairs)
    latency = stats(every)
    return {
        "what": "tone switched on at a WHIP publisher → its first sample leaving the audio "
        "output of Chromium pages playing the space with hls.js",
        "listeners": LISTENERS,
        "onsets_published": len(published),
        "onsets_measured": measured,
        "onsets_verified_1000hz": verified,
        "latency_s": latency,
        "target_p95_s": TARGET_EAR_P95_S,
        "met": bool(
            measured >= MIN_ONSETS * LISTENERS and latency.get("p95", math.inf) <= TARGET_EAR_P95_S
        ),
        # At the analyser, before the page's audio output (its outputLatency and buffering).
        "latency_at_analyser_s": stats(at_poll),
        "per_listener_p50_s": [stats(_latencies(one)).get("p50") for one in pairs],
        # hls.js's own figure: how far behind the playlist's live edge each page played.
        "hls_latency_at_start_s": [round(h["latency_s"], 4) for h in hls_start],
        "hls_latency_at_end_s": [round(h["latency_s"], 4) for h in hls_end],
        "hls_target_latency_s": [h["target_latency_s"] for h in hls_end],
        "playback_rate_at_end": [h["playback_rate"] for h in hls_end],
        "stalls": sum(h["stalls"] for h in hls_end),
        "player_waiting_events": [w["waiting"] for w in watches],
        "clock_offset_drift_s": round(drift, 6),
        "latencies_s": [round(v, 4) for v in every],
    }


async def join_time(browser: Browser, url: str) -> dict[str, Any]:
    joins: list[float] = []
    from_click: list[float] = []
    for _ in range(JOINS):
        page = await _open_listener(browser, url)
        clicked = await page.evaluate("performance.now()")
        audible = await _wait(page, "window.__watch.firstAudible", 10, "the tone")
        requested = await page.evaluate(_PLAYLIST_REQUESTED)
        assert requested is not None, "no request for audio.m3u8 in the resource timings"
        joins.append((audible - requested) / 1000)
        from_click.append((audible - clicked) / 1000)
        await page.context.close()
    join = stats(joins)
    return {
        "what": "fresh listener page on a live space: first request for the media playlist "
        "→ first 10 ms analyser poll that hears the tone",
        "joins": len(joins),
        "join_s": join,
        "from_play_click_s": stats(from_click),
        "target_p95_s": TARGET_JOIN_P95_S,
        "met": bool(len(joins) >= 10 and join.get("p95", math.inf) <= TARGET_JOIN_P95_S),
        "joins_s": [round(v, 4) for v in joins],
    }


async def _live_for(http: aiohttp.ClientSession, state_url: str, segments: int) -> None:
    """Wait until the space has written ``segments`` segments, as a space listeners join has."""
    deadline = time.monotonic() + 20
    while True:
        async with http.get(state_url) as resp:
            state = await resp.json()
        if state["segments"] >= segments:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {state['segments']} segments after 20 s: {state}")
        await asyncio.sleep(0.1)


async def measure(tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    wav = make_tone_wav(tmp / "tone.wav", TONE_HZ, seconds=2)  # nobody here uses the mic
    with majlis_server(tmp / "data") as server:
        space = server.create_space("Ear latency")
        url = server.base + space["page_url"]
        async with aiohttp.ClientSession() as http:
            track = ToneTrack(TONE_HZ, TONE_AMPLITUDE, on=False)
            pub = await publish(
                http, server.base, space["whip_url"], space["speaker_token"], track, "bench"
            )
            try:
                await _live_for(http, server.base + space["state_url"], LIVE_SEGMENTS)
                async with chromium(wav) as browser:
                    ear = await ear_latency(browser, url, track)
                    track.switch(True)
                    join = await join_time(browser, url)
            finally:
                await unpublish(http, server.base, pub)
    return ear, join


def _print(ear: dict[str, Any], join: dict[str, Any]) -> None:
    lat, j = ear["latency_s"], join["join_s"]
    print(
        f"ear latency: {ear['listeners']} listeners × {ear['onsets_published']} onsets, "
        f"{ear['onsets_measured']} measured ({ear['onsets_verified_1000hz']} verified 1000 Hz), "
        f"p50 {lat.get('p50')} s, p95 {lat.get('p95')} s, max {lat.get('max')} s "
        f"(target p95 ≤ {TARGET_EAR_P95_S} s: {'met' if ear['met'] else 'MISSED'}); "
        f"{ear['stalls']} stalls"
    )
    print(
        f"  per listener p50 {ear['per_listener_p50_s']} s; hls.js latency "
        f"{ear['hls_latency_at_end_s']} s behind the live edge (target "
        f"{ear['hls_target_latency_s']} s)"
    )
    print(
        f"join time: {join['joins']} joins, p50 {j.get('p50')} s, p95 {j.get('p95')} s, "
        f"max {j.get('max')} s (target p95 ≤ {TARGET_JOIN_P95_S} s: "
        f"{'met' if join['met'] else 'MISSED'})"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="majlis-ear-") as tmp:
        ear, join = asyncio.run(measure(Path(tmp)))
    update("ear_latency", ear)
    update("join_time", join)
    _print(ear, join)


if __name__ == "__main__":
    main()
