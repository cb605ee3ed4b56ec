"""A listener takes part from the space page in real Chromium: reacts, raises a hand, is
invited by the host from the host console, consents and goes on stage; their (fake)
microphone is then heard in the mix, measured by FFT; they mute themselves, and the host's
locked mute is one they cannot lift.
The Arabic page does the same with its own strings, right to left.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from majlis.http.pages import strings
from tests.support.audio import decode_mp4, tone_power
from tests.support.browser import chromium, make_tone_wav
from tests.support.player import Player
from tests.support.server import RunningServer
from tests.support.whip import ToneTrack, publish, unpublish

HOST_TONE, GUEST_TONE = 440.0, 1000.0


async def _until(what: str, check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.1)


async def _state(http: aiohttp.ClientSession, server: RunningServer, space: dict[str, Any]) -> Any:
    async with http.get(server.base + space["state_url"]) as resp:
        return await resp.json()


@pytest.mark.parametrize("lang", ["en", "ar"])
async def test_a_listener_reacts_raises_a_hand_and_is_heard_on_stage(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path, lang: str
) -> None:
    t = strings(lang)
    space = server.create_space("Take part")
    host = await publish(
        http, server.base, space["whip_url"], space["host_token"], ToneTrack(HOST_TONE), "host"
    )
    wav = make_tone_wav(tmp_path / "guest.wav", GUEST_TONE)
    headers = {"Authorization": f"Bearer {space['host_token']}"}
    try:
        async with chromium(wav) as browser:
            # The host's own page: its console shows raised hands and the stage.
            console: Page = await (await browser.new_context()).new_page()
            host_link = f"{server.base}{space['page_url']}?lang={lang}#token={space['host_token']}"
            await console.goto(host_link)
            await console.wait_for_selector("#console:not([hidden])", timeout=10_000)
            page: Page = await (await browser.new_context()).new_page()
            # raw=1: no echo cancellation or noise suppression, which fade a steady test tone.
            await page.goto(f"{server.base}{space['page_url']}?lang={lang}#raw=1")
            assert await page.get_attribute("html", "dir") == ("rtl" if lang == "ar" else "ltr")
            await page.wait_for_selector("#take-part:not([hidden])", timeout=10_000)

            # A reaction: counted by the server, shown to everyone by the room state.
            await page.get_by_role("button", name=f"{t['react']} 👏").click()

            async def counted() -> bool:
                total = (await _state(http, server, space))["reactions"]["total"]
                return bool(total.get("👏") == 1)

            await _until("the reaction", counted)
            counts = page.locator("#reaction-counts")
            await counts.filter(has_text="👏 1").wait_for(timeout=5_000)

            # A raised hand: the host's console lists it (through the control WebSocket) and
            # the host invites from there.
            await page.fill("#your-name", "ليلى")
            await page.get_by_role("button", name=t["raise_hand"]).click()
            await page.get_by_role("button", name=t["lower_hand"]).wait_for(timeout=5_000)
            assert (await _state(http, server, space))["hands"] == 1
            await console.get_by_role("button", name=f"{t['invite']}: ليلى").click()

            # The page shows the invitation with the recording notice; consenting puts the
            # listener on stage with a token of their own, and the microphone goes out.
            accept = page.get_by_role("button", name=t["accept_invite"])
            await accept.wait_for(timeout=10_000)
            assert t["recorded_notice"] in await page.inner_text("#invitation")
            await accept.click()
            await page.wait_for_selector("#speaker:not([hidden])", timeout=5_000)
            assert await page.is_hidden("#take-part")
            await page.get_by_role("button", name=t["join_stage"]).click()

            async def on_stage() -> bool:
                stage = (await _state(http, server, space))["stage"]
                return any(s["name"] == "ليلى" and s["connected"] for s in stage)

            await _until("the guest's WHIP session", on_stage, within=20)
            await asyncio.sleep(1.5)
            player = Player(http, server.base + space["playlist_url"])
            await player.run(3.0)
            samples = decode_mp4(player.media())
            assert tone_power(samples, GUEST_TONE) > 0.1, "the guest is heard"
            assert tone_power(samples, HOST_TONE) > 0.1, "the host is still heard"

            # The host mutes the guest from the console (locked), then unmutes.
            async def muted(value: bool) -> Callable[[], Awaitable[bool]]:
                async def check() -> bool:
                    stage = (await _state(http, server, space))["stage"]
                    return any(s["name"] == "ليلى" and s["muted"] is value for s in stage)

                return check

            # The guest mutes and unmutes themselves from the speaker card.
            await page.click("#self-mute")
            await _until("the guest's own mute", await muted(True))
            await page.click("#self-mute")
            await _until("the guest's own unmute", await muted(False))
            # The host's mute is locked: the guest's button cannot lift it, the host's can.
            await console.get_by_role("button", name=f"{t['mute']}: ليلى").click()
            await _until("the host's mute", await muted(True))
            await page.wait_for_selector("#locked-note:not([hidden])", timeout=5_000)
            assert await page.is_disabled("#self-mute")
            await console.get_by_role("button", name=f"{t['unmute']}: ليلى").click()
            await _until("the host's unmute", await muted(False))
            await page.wait_for_selector("#self-mute:enabled", timeout=5_000)
            consents = server.base + f"/api/spaces/{space['id']}/consents"
            async with http.get(consents, headers=headers) as resp:
                assert [c["name"] for c in (await resp.json())["consents"]] == ["ليلى"]
    finally:
        await unpublish(http, server.base, host)
        await host.pc.close()
