"""The whole room in real Chromium, several pages at once, in English and in Arabic.

The host creates the space on the home page and goes on stage; a listener's page hears the
host; a guest reacts, raises a hand, is invited from the host console, consents and goes
on stage, and the listener's page hears the guest's tone too (Web Audio analyser on the
`<audio>` element). The guest mutes themselves; the host's locked mute takes the guest's
tone out of what the listener hears and cannot be lifted by the guest; the host unmutes,
ends the space; the listener's page turns into the replay, which holds both voices. Host
and guest run in two browsers so that each fake microphone plays its own tone.

Screenshots go to $MAJLIS_SCREENSHOTS (docs/screenshots to refresh the docs), else tmp_path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page

from majlis.http.pages import strings
from tests.support.audio import decode_mp4, tone_power
from tests.support.browser import chromium, install_ear, listen_for, make_tone_wav
from tests.support.server import RunningServer

HOST_TONE, GUEST_TONE = 440.0, 1000.0
GUEST = "ليلى"
VIEWPORT = {"width": 800, "height": 1000}
PRESENT_DB, GONE_DB = -45.0, -70.0

# The analyser's level (dBFS) at one frequency: the loudest of the three nearest bins.
_DB_AT = """(freq) => {
  const { ctx, analyser } = window.__ear;
  const s = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(s);
  const bin = Math.round((freq * analyser.fftSize) / ctx.sampleRate);
  return Math.max(s[bin - 1], s[bin], s[bin + 1]);
}"""


async def _until(what: str, check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.1)


async def _open(browser: Browser, url: str) -> Page:
    page = await (await browser.new_context(viewport=VIEWPORT)).new_page()  # type: ignore[arg-type]
    await page.goto(url)
    return page


def _level(page: Page, freq: float, test: Callable[[float], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return test(float(await page.evaluate(_DB_AT, freq)))

    return check


@pytest.mark.parametrize("lang", ["en", "ar"])
async def test_host_invites_a_listener_who_is_heard_muted_and_replayed(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path, shots: Path, lang: str
) -> None:
    t = strings(lang)
    host_wav = make_tone_wav(tmp_path / "host.wav", HOST_TONE)
    guest_wav = make_tone_wav(tmp_path / "guest.wav", GUEST_TONE)

    async def state() -> Any:
        async with http.get(f"{server.base}/live/{space_id}/state.json") as resp:
            return await resp.json()

    async def guest_muted(value: bool) -> bool:
        return any(s["name"] == GUEST and s["muted"] is value for s in (await state())["stage"])

    async with chromium(host_wav) as hosts, chromium(guest_wav) as guests:
        # The host creates the space on the home page and goes on stage from the host link.
        home = await _open(hosts, f"{server.base}/?lang={lang}")
        await home.fill("#admin-token", server.admin_token)
        await home.fill("#title", "Elon Musk مع ترامب")
        await home.get_by_role("button", name=t["create"]).click()
        await home.wait_for_selector("#created:not([hidden])", timeout=10_000)
        host_link = await home.get_attribute("#host-link", "href")
        listen_link = await home.get_attribute("#listen-link", "href")
        assert host_link and listen_link
        space_id = listen_link.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        path, fragment = host_link.split("#", 1)
        host = await _open(hosts, f"{server.base}{path}?lang={lang}#{fragment}&raw=1")
        await host.wait_for_selector("#console:not([hidden])", timeout=10_000)
        await host.get_by_role("button", name=t["join_stage"]).click()

        # A listener hears the host, whenever in the space's first seconds the page opens and
        # presses Play (tests/e2e/test_early_join.py covers those moments one by one).
        listener = await _open(hosts, f"{server.base}{listen_link}?lang={lang}")
        assert await listener.get_attribute("html", "dir") == ("rtl" if lang == "ar" else "ltr")
        await install_ear(listener)
        await listener.get_by_role("button", name=t["play"]).click()
        await listen_for(listener, HOST_TONE, within=20)

        # A guest reacts and raises a hand; the host invites from the console.
        guest = await _open(guests, f"{server.base}{listen_link}?lang={lang}#raw=1")
        await guest.wait_for_selector("#take-part:not([hidden])", timeout=10_000)
        await guest.get_by_role("button", name=f"{t['react']} 👏").click()
        await guest.locator("#reaction-counts", has_text="👏 1").wait_for(timeout=10_000)
        await guest.fill("#your-name", GUEST)
        await guest.get_by_role("button", name=t["raise_hand"]).click()
        invite = host.get_by_role("button", name=f"{t['invite']}: {GUEST}")
        await invite.wait_for(timeout=10_000)
        await host.screenshot(path=shots / f"space-host-{lang}.png", full_page=True)
        await invite.click()

        # The guest sees the recording notice, consents, goes on stage and is heard.
        accept = guest.get_by_role("button", name=t["accept_invite"])
        await accept.wait_for(timeout=10_000)
        assert t["recorded_notice"] in await guest.inner_text("#invitation")
        await guest.screenshot(path=shots / f"space-invited-{lang}.png", full_page=True)
        await accept.click()
        await _until(
            f"the speaker card (hand status: {await guest.inner_text('#hand-status')!r})",
            lambda: guest.is_visible("#join"),
        )
        await guest.click("#join")
        await _until(
            "the guest heard", _level(listener, GUEST_TONE, lambda db: db > PRESENT_DB), 20
        )
        assert float(await listener.evaluate(_DB_AT, HOST_TONE)) > PRESENT_DB
        await listener.screenshot(path=shots / f"space-listener-{lang}.png", full_page=True)

        # The guest mutes and unmutes themselves.
        await guest.click("#self-mute")
        await _until("the guest's own mute", lambda: guest_muted(True))
        await guest.click("#self-mute")
        await _until("the guest's own unmute", lambda: guest_muted(False))

        # The host's locked mute: the tone leaves the listener's ear; the guest cannot lift it.
        await host.get_by_role("button", name=f"{t['mute']}: {GUEST}").click()
        await _until("the host's mute", lambda: guest_muted(True))
        await _until(
            "the guest's tone gone", _level(listener, GUEST_TONE, lambda db: db < GONE_DB), 15
        )
        assert float(await listener.evaluate(_DB_AT, HOST_TONE)) > PRESENT_DB
        await guest.wait_for_selector("#locked-note:not([hidden])", timeout=5_000)
        assert await guest.is_disabled("#self-mute")
        await host.get_by_role("button", name=f"{t['unmute']}: {GUEST}").click()
        await _until("the host's unmute", lambda: guest_muted(False))

        # The host ends the space; the same listen link plays the replay.
        host.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await host.get_by_role("button", name=t["end_space"]).click()
        await _until("the end", lambda: _status_is(state, "ended"))
        await listener.reload()
        await listener.get_by_role("button", name=t["replay"]).wait_for(timeout=10_000)
        assert await listener.is_visible("#ended-notice")
        await install_ear(listener)
        await listener.get_by_role("button", name=t["replay"]).click()
        await listen_for(listener, HOST_TONE, within=20)
    # The replay is the recording of all of it: both voices in it (tests/e2e/test_browser.py
    # plays a replay in Chromium).
    replay = await _replay(http, f"{server.base}/live/{space_id}/")
    # The guest spoke for a few of the replay's seconds: a small share, far above nothing.
    assert tone_power(replay, HOST_TONE) > 0.2 and tone_power(replay, GUEST_TONE) > 0.005
    async with http.get(
        f"{server.base}/api/spaces/{space_id}/consents",
        headers={"Authorization": f"Bearer {server.admin_token}"},
    ) as resp:
        assert [c["name"] for c in (await resp.json())["consents"]] == [GUEST]


async def _replay(http: aiohttp.ClientSession, live: str) -> Any:
    async with http.get(live + "audio.m3u8") as resp:
        playlist = await resp.text()
    assert "#EXT-X-ENDLIST" in playlist
    media = b""
    for uri in ["init.mp4", *(line for line in playlist.splitlines() if line.startswith("s/"))]:
        async with http.get(live + uri) as resp:
            media += await resp.read()
    return decode_mp4(media)


async def _status_is(state: Callable[[], Awaitable[Any]], status: str) -> bool:
    return bool((await state())["status"] == status)
