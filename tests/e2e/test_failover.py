"""A listener's edge dies mid-playback: Chromium's hls.js moves to the other edge by itself.

One origin started with `--pathway a=EDGE_A --pathway b=EDGE_B`, two real nginx edges from
`majlis edge-config`, one aiortc speaker sending a 1000 Hz tone. The real listener page plays
the steered playlist (one variant per edge, HLS Content Steering); an AnalyserNode on its
`<audio>` element samples what it plays every 25 ms. Then the edge the player is on is
killed (SIGKILL: connections refused and reset) or hung (SIGSTOP: connections accepted,
never answered), and the test measures how long the tone is missing from the ear.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from tests.support.browser import chromium, install_ear, listen_for, make_tone_wav
from tests.support.nginx import RunningNginx, free_port, nginx_edge
from tests.support.player import wait_live
from tests.support.server import RunningServer, majlis_server
from tests.support.whip import ToneTrack, publish

TONE = 1000.0
# The ear: a 4096-point FFT (85 ms at 48 kHz) so a gap of a few hundred milliseconds shows,
# read every 25 ms inside the page (no round trip to the test per reading).
FFT_SIZE = 4096
SAMPLE_MS = 25
# Tone heard: the loudest bin within 20 Hz of the tone and louder than -40 dBFS (a steady
# 0.3-amplitude tone peaks near -25 dBFS here; silence or a stalled element is far below).
TOLERANCE_HZ = 20.0
MIN_PEAK_DB = -40.0
STEADY_S = 3.0  # heard without a break before the edge goes, so the gap is the edge's
STEADY_GAP_S = 0.3
WATCH_S = 14.0  # how long after the failure the ear is watched
# The tone must be back for good: heard in nearly all samples of the watch's last seconds
# (a busy shared machine may still drop a sample or a short stretch, failure or not).
RECOVERED_S = 4.0
RECOVERED_SHARE = 0.6
# The surviving edge then hangs for longer than the page's timeouts (0.8 s + 3 s), so every
# pathway has failed: hls.js stops loading and the page starts it again every second.
HICCUP_S = 6.0
# Why 6 s: a refused or reset connection moves hls.js to the next pathway at once (it never
# retries those), so a killed edge should cost well under a second. A hung edge costs the
# page's timeouts: a blocking reload gives up after 0.8 s (hls.js), is retried once as a
# plain reload that gives up after 3 s to the first byte (space.js), then the player switches
# and loads the other edge's playlist and a part: ~4 s without sound minus the ~0.6-1 s of
# audio buffered ahead. 6 s leaves 2 s for a busy shared machine, and is still "within a few
# seconds" for a listener.
MAX_GAP_S = 6.0

# The tests run in a network namespace with loopback only, which Chromium reports as offline
# (navigator.onLine false). hls.js then takes a refused connection for "no network" and waits
# for the network to come back instead of moving to another pathway. A listener's browser on
# a real network is online: say so to the page.
ONLINE = "Object.defineProperty(Navigator.prototype, 'onLine', { get: () => true });"

_START_SAMPLING = """
([ms, tone, tolerance]) => {
  const { ctx, analyser } = window.__ear;
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  const binHz = ctx.sampleRate / analyser.fftSize;
  const first = Math.ceil(50 / binHz);
  window.__samples = [];
  window.__sampler = setInterval(() => {
    analyser.getFloatFrequencyData(spectrum);
    let best = first;
    for (let i = first; i < spectrum.length; i++) if (spectrum[i] > spectrum[best]) best = i;
    const [a, b, c] = [spectrum[best - 1], spectrum[best], spectrum[best + 1]];
    const shift = a - 2 * b + c === 0 ? 0 : (0.5 * (a - c)) / (a - 2 * b + c);
    const frequency = (best + shift) * binHz;
    const heard = Math.abs(frequency - tone) <= tolerance && b >= %MIN_DB%;
    window.__samples.push([performance.now() / 1000, heard ? 1 : 0]);
  }, ms);
}
""".replace("%MIN_DB%", str(MIN_PEAK_DB))


async def _pathway(page: Page, within: float = 10.0, not_: str | None = None) -> str:
    """The pathway the page's hls.js loads its playlist from (space.js sets it)."""
    deadline = time.monotonic() + within
    while True:
        name = await page.get_attribute("#player", "data-pathway")
        if name and name != not_:
            return name
        if time.monotonic() > deadline:
            raise AssertionError(f"the player is on pathway {name!r} after {within} s")
        await page.wait_for_timeout(100)


def longest_gap(samples: list[tuple[float, int]], since: float, until: float) -> float:
    """The longest stretch without the tone between ``since`` and ``until``: from the last
    sample that heard it (or ``since``) to the next one that did (or ``until``)."""
    longest = 0.0
    last_heard = since
    for at, heard in samples:
        if since <= at <= until and heard:
            longest = max(longest, at - last_heard)
            last_heard = at
    return max(longest, min(until, samples[-1][0]) - last_heard)


async def _samples(page: Page) -> list[tuple[float, int]]:
    return [(float(t), int(h)) for t, h in await page.evaluate("window.__samples")]


async def _wait_steady(page: Page, within: float = 30.0) -> None:
    """Until the ear has heard the tone without a break for STEADY_S: a failure then hits
    steady playback, not the join (whose first seconds may wait once, by design)."""
    deadline = time.monotonic() + within
    while True:
        samples = await _samples(page)
        if samples and samples[-1][0] - samples[0][0] >= STEADY_S:
            now = samples[-1][0]
            if longest_gap(samples, now - STEADY_S, now) < STEADY_GAP_S:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"the tone was not steady for {STEADY_S} s within {within} s")
        await page.wait_for_timeout(250)


def heard_share(samples: list[tuple[float, int]], since: float) -> float:
    recent = [heard for at, heard in samples if at >= since]
    return sum(recent) / max(1, len(recent))


def _freeze(edge: RunningNginx) -> list[int]:
    """Stop the master first, so that it cannot start a new worker (or cache manager) for
    one that is stopped or killed next, then its children; returns them all."""
    os.kill(edge.process.pid, signal.SIGSTOP)
    pids = edge.pids()
    for pid in pids[1:]:
        os.kill(pid, signal.SIGSTOP)
    return pids


def _fail(edge: RunningNginx, how: str) -> None:
    """Kill or hang the master and its children, by their own PIDs (all started here)."""
    pids = _freeze(edge)
    if how != "hang":
        for pid in reversed(pids):  # children first: none may outlive the master
            os.kill(pid, signal.SIGKILL)


async def _hiccup(page: Page, edge: RunningNginx) -> float:
    """Hang ``edge`` for HICCUP_S, then let it go on; returns when (page clock) it did."""
    pids = _freeze(edge)
    try:
        await page.wait_for_timeout(HICCUP_S * 1000)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    resumed: float = await page.evaluate("performance.now() / 1000")
    return resumed


def _finish(edge: RunningNginx) -> None:
    """A hung edge cannot take SIGTERM: kill it for good before the fixture stops it."""
    with suppress(ProcessLookupError):
        pids = _freeze(edge)
        for pid in reversed(pids):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    edge.process.wait(10)


@pytest.mark.parametrize("how", ["kill", "hang", "kill+hiccup"])
async def test_listener_moves_to_the_other_edge(tmp_path: Path, how: str) -> None:
    ports = {"a": free_port(), "b": free_port()}
    flags = [f"--pathway={name}=http://127.0.0.1:{port}" for name, port in ports.items()]
    wav = make_tone_wav(tmp_path / "mic.wav", seconds=1)  # the listener page uses no mic
    with ExitStack() as stack:
        server: RunningServer = stack.enter_context(majlis_server(tmp_path / "data", *flags))
        edges = {
            name: stack.enter_context(nginx_edge(server.base, "--workers", "1", port=port))
            for name, port in ports.items()
        }
        result = await _scenario(server, edges, wav, how)
    # The player fetched its media through the surviving edge, not the origin.
    survivor = edges[result["after"]].access_log
    assert f"/live/{result['space']}/audio.m3u8" in survivor, survivor[-2000:]
    assert f"/live/{result['space']}/p/" in survivor, survivor[-2000:]


async def _scenario(
    server: RunningServer, edges: dict[str, RunningNginx], wav: Path, how: str
) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        space = server.create_space("Failover")
        pub = await publish(
            http, server.base, space["whip_url"], space["host_token"], ToneTrack(TONE)
        )
        try:
            await wait_live(http, f"{server.base}/live/{space['id']}/audio.m3u8")
            async with chromium(wav) as browser:
                page = await browser.new_page()
                await page.add_init_script(ONLINE)
                await page.goto(server.base + space["page_url"])
                assert await page.get_attribute("body", "data-playlist") == "steered.m3u8"
                await install_ear(page, FFT_SIZE)
                await page.click("#play")
                await listen_for(page, TONE, within=20, min_peak_db=MIN_PEAK_DB)
                before = await _pathway(page)
                await page.evaluate(_START_SAMPLING, [SAMPLE_MS, TONE, TOLERANCE_HZ])
                await _wait_steady(page)
                failed_at: float = await page.evaluate("performance.now() / 1000")
                _fail(edges[before], how)
                try:
                    await page.wait_for_timeout(WATCH_S * 1000)
                    samples = await _samples(page)
                    after = await _pathway(page, within=1, not_=before)
                    if how == "kill+hiccup":
                        resumed_at = await _hiccup(page, edges[after])
                        await page.wait_for_timeout(WATCH_S * 1000)
                        again = await _samples(page)
                finally:
                    if how == "hang":
                        _finish(edges[before])
        finally:
            await pub.pc.close()
    last = samples[-1][0]
    steady = longest_gap(samples, failed_at - STEADY_S, failed_at)
    gap = longest_gap(samples, failed_at, last)
    share = heard_share(samples, last - RECOVERED_S)
    print(
        f"\nfailover ({how} edge {before} -> {after}): tone missing for {gap:.2f} s at most "
        f"(before the failure: {steady:.2f} s); heard in {share:.0%} of the last {RECOVERED_S:g} s"
    )
    assert steady < 1.0, f"the tone was not steady before the edge failed: {steady:.2f} s gap"
    assert gap <= MAX_GAP_S, f"the tone was missing for {gap:.2f} s after the edge {how}"
    assert share >= RECOVERED_SHARE, f"the tone did not come back for good: {share:.0%} heard"
    if how == "kill+hiccup":
        back = min((at for at, heard in again if heard and at > resumed_at), default=None)
        assert back is not None, f"no tone after {after} answered again"
        share = heard_share(again, again[-1][0] - RECOVERED_S)
        print(
            f"then edge {after} hung for {HICCUP_S:g} s: tone back {back - resumed_at:.2f} s "
            f"after it answered again; heard in {share:.0%} of the last {RECOVERED_S:g} s"
        )
        assert back - resumed_at <= MAX_GAP_S, f"tone back only {back - resumed_at:.2f} s later"
        assert share >= RECOVERED_SHARE, f"the tone did not come back for good: {share:.0%}"
    return {"space": space["id"], "before": before, "after": after}


async def test_without_pathways_the_page_plays_the_media_playlist(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = server.create_space("No pathways")
    for name in ("steered.m3u8", "steering.json"):
        async with http.get(f"{server.base}/live/{space['id']}/{name}") as resp:
            assert resp.status == 404, name
            problem = await resp.json()
            assert problem["error"] == "not_found"
            assert "--pathway" in problem["detail"]
    async with http.get(server.base + space["page_url"]) as resp:
        assert 'data-playlist="audio.m3u8"' in await resp.text()


async def test_steering_urls_at_the_origin_and_through_an_edge(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    flags = (f"--pathway=a=http://127.0.0.1:{port}", "--pathway=b=https://edge-b.example/m")
    with (
        majlis_server(tmp_path / "data", *flags) as server,
        nginx_edge(server.base, "--workers", "1", port=port) as edge,
    ):
        space = server.create_space("Steering")
        live = f"/live/{space['id']}/"
        async with http.get(server.base + live + "steered.m3u8") as resp:
            assert resp.status == 200
            assert resp.content_type == "application/vnd.apple.mpegurl"
            assert resp.headers["Cache-Control"] == "public, max-age=300"
            text = await resp.text()
        assert text.splitlines()[3:] == [
            '#EXT-X-CONTENT-STEERING:SERVER-URI="steering.json",PATHWAY-ID="a"',
            '#EXT-X-STREAM-INF:BANDWIDTH=55199,CODECS="mp4a.40.2",PATHWAY-ID="a"',
            f"http://127.0.0.1:{port}{live}audio.m3u8",
            '#EXT-X-STREAM-INF:BANDWIDTH=55199,CODECS="mp4a.40.2",PATHWAY-ID="b"',
            f"https://edge-b.example/m{live}audio.m3u8",
        ]
        query = "?_HLS_pathway=b&_HLS_throughput=55000"
        async with http.get(server.base + live + "steering.json" + query) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert resp.headers["Cache-Control"] == "public, max-age=30"
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert await resp.json() == {"VERSION": 1, "TTL": 60, "PATHWAY-PRIORITY": ["a", "b"]}
        for bad in ("_HLS_pathway=a%20b", "_HLS_throughput=fast"):
            async with http.get(f"{server.base}{live}steering.json?{bad}") as resp:
                assert resp.status == 400, bad
                assert (await resp.json())["error"] == "bad_request"
        # Through an edge: one cached object, whatever query each player adds.
        statuses = []
        for query in ("?_HLS_pathway=a&_HLS_throughput=1", "?_HLS_pathway=b", "?x=%20"):
            async with http.get(edge.base + live + "steering.json" + query) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["PATHWAY-PRIORITY"] == ["a", "b"]
                statuses.append(resp.headers["X-Cache-Status"])
        assert statuses == ["MISS", "HIT", "HIT"]


async def test_replay_plays_through_the_pathways(tmp_path: Path) -> None:
    """An ended space: the page's steered playlist leads to the replay through an edge."""
    ports = {"a": free_port(), "b": free_port()}
    flags = [f"--pathway={name}=http://127.0.0.1:{port}" for name, port in ports.items()]
    wav = make_tone_wav(tmp_path / "mic.wav", seconds=1)
    with ExitStack() as stack:
        server: RunningServer = stack.enter_context(majlis_server(tmp_path / "data", *flags))
        edges = {
            name: stack.enter_context(nginx_edge(server.base, "--workers", "1", port=port))
            for name, port in ports.items()
        }
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            space = server.create_space("Replay")
            pub = await publish(
                http, server.base, space["whip_url"], space["host_token"], ToneTrack(TONE)
            )
            try:
                await wait_live(http, f"{server.base}/live/{space['id']}/audio.m3u8")
                await asyncio.sleep(3)  # a few segments of tone
            finally:
                await pub.pc.close()
            headers = {"Authorization": f"Bearer {space['host_token']}"}
            async with http.post(
                f"{server.base}/api/spaces/{space['id']}/end", headers=headers
            ) as resp:
                assert resp.status == 200, await resp.text()
            async with chromium(wav) as browser:
                page = await browser.new_page()
                await page.add_init_script(ONLINE)
                await page.goto(server.base + space["page_url"])
                await install_ear(page)
                await page.click("#play")
                await listen_for(page, TONE, within=20, min_peak_db=MIN_PEAK_DB)
                pathway = await _pathway(page)
                duration = await page.evaluate("document.getElementById('player').duration")
                assert 1 < duration < 60, f"a replay has a finite length, not {duration}"
    log = edges[pathway].access_log
    assert f"/live/{space['id']}/s/" in log, log[-2000:]  # the replay's segments, via the edge
