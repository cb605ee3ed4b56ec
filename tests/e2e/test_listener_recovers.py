"""A listener's page plays on by itself after its playlist was refused for a few seconds.

A space answers 503 while it moves between nodes, and any proxy or edge in between can
answer an error too. hls.js retries a refused playlist a few times with growing waits (the
page sets six), and once it has used them up it stops for good: then the page starts it
again a second later. Here the page reaches the server through a
small proxy that answers 404 to the media playlist for a few seconds; the page must hear the
speaker again, with playback moving on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web
from playwright.async_api import Page

from tests.support.browser import chromium, install_ear, listen_for, make_tone_wav
from tests.support.nginx import free_port
from tests.support.server import RunningServer
from tests.support.whip import ToneTrack, publish, unpublish

TONE = 660.0
REFUSED_S = 4.0
SESSION = web.AppKey("session", aiohttp.ClientSession)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class Proxy:
    """Passes every request to the server, except the media playlist while `refusing`."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.refusing = False
        self.refused = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refusing and request.path.endswith("/audio.m3u8"):
            self.refused += 1
            return web.json_response({"error": "not_found", "status": 404}, status=404)
        session = request.app[SESSION]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(
            request.method,
            self.origin + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, body=body, headers=out)


@asynccontextmanager
async def proxy_to(origin: str) -> AsyncIterator[tuple[str, Proxy]]:
    proxy = Proxy(origin)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        app[SESSION] = session
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}", proxy
        finally:
            await runner.cleanup()


async def _playback(page: Page) -> float:
    return float(await page.evaluate("document.getElementById('player').currentTime"))


async def test_the_page_plays_on_after_its_playlist_was_refused(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    space = server.create_space("Refused for a moment")
    speaker = await publish(http, server.base, space["whip_url"], space["speaker_token"],
                            ToneTrack(TONE))  # fmt: skip
    try:
        async with (
            proxy_to(server.base) as (base, proxy),
            chromium(make_tone_wav(tmp_path / "unused.wav")) as browser,
        ):
            page = await (await browser.new_context()).new_page()
            await page.goto(base + space["page_url"])
            await install_ear(page)
            await page.click("#play")
            await listen_for(page, TONE, within=15)

            proxy.refusing = True
            await page.wait_for_timeout(REFUSED_S * 1000)
            proxy.refusing = False
            assert proxy.refused >= 1, "the page asked for its playlist while it was refused"
            stalled_at = await _playback(page)

            back = time.monotonic()
            heard = await listen_for(page, TONE, within=25)
            print(f"tone heard again {time.monotonic() - back:.1f} s after the playlist "
                  f"answered again ({proxy.refused} refusals)")  # fmt: skip
            await page.wait_for_timeout(3000)
            later = await listen_for(page, TONE, within=5)
            assert later.current_time - stalled_at > 2.5, (stalled_at, heard, later)
    finally:
        await unpublish(http, server.base, speaker)
