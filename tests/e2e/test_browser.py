"""A real Chromium on stage and a real Chromium listening: the tone must reach the ear.

Page 1 publishes its (fake) microphone over WHIP from space.js; page 2 plays the space with
hls.js and an AnalyserNode on its `<audio>` element proves by FFT that 1000 Hz arrives. Then
the host ends the space and the same page plays the replay.

Screenshots go to $MAJLIS_SCREENSHOTS (docs/screenshots to refresh the docs), else tmp_path.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Page

from majlis.http.pages import strings
from tests.support.browser import chromium, install_ear, listen_for, make_tone_wav
from tests.support.server import RunningServer

TONE = 1000.0
# Mixed-direction on purpose: a Latin name then Arabic words, as real titles are.
TITLE = "Elon Musk مع ترامب"
SPEAKER = "سارة"
VIEWPORT = {"width": 800, "height": 900}


async def _open(browser: Browser, url: str) -> Page:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(url)
    return page


async def _wait_text(page: Page, selector: str, text: str, within: float) -> None:
    """Poll until ``selector``'s text is ``text``; on timeout, say what it was instead."""
    deadline = time.monotonic() + within
    while (current := await page.evaluate(_TEXT, selector)) != text:
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} shows {current!r}, not {text!r}, after {within} s")
        await page.wait_for_timeout(50)


_TEXT = "(sel) => document.querySelector(sel)?.textContent ?? null"

# Where a word of an element's text is drawn, from the layout engine's own bidi reordering.
_WORD_X = """([sel, word]) => {
  const node = document.querySelector(sel).firstChild;
  const range = document.createRange();
  const at = node.textContent.indexOf(word);
  range.setStart(node, at);
  range.setEnd(node, at + word.length);
  return range.getBoundingClientRect().left;
}"""


async def _reads_right_to_left(page: Page, selector: str) -> bool:
    """The title is an Arabic sentence: its Latin name must come first from the right."""
    name = await page.evaluate(_WORD_X, [selector, "Elon Musk"])
    arabic = await page.evaluate(_WORD_X, [selector, "ترامب"])
    return bool(name > arabic)


async def test_speaker_page_to_listener_page_then_replay(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path, shots: Path
) -> None:
    en, ar = strings("en"), strings("ar")
    space = server.create_space(TITLE)
    page_url = server.base + space["page_url"]
    wav = make_tone_wav(tmp_path / "tone.wav", TONE)
    async with chromium(wav) as browser:
        speaker = await _open(
            browser, f"{page_url}#token={space['speaker_token']}&raw=1&name={SPEAKER}"
        )
        assert await _reads_right_to_left(speaker, "#space-title bdi")
        await speaker.click("#join")
        await _wait_text(speaker, "#speaker-status", en["you_are_live"], within=15)

        listener = await _open(browser, page_url + "?lang=ar")
        assert await listener.get_attribute("html", "dir") == "rtl"
        assert await _reads_right_to_left(listener, "#space-title bdi")
        await install_ear(listener)
        await listener.click("#play")
        heard = await listen_for(listener, TONE, within=15)
        assert heard.rms > 0.05, f"the tone arrived but too quietly: {heard}"

        # Once audio flows the stage shows the speaker talking: that is the picture we keep.
        await _wait_text(listener, "#stage .talking bdi", SPEAKER, within=5)
        await speaker.screenshot(path=shots / "space-speaker-en.png", full_page=True)
        await listener.screenshot(path=shots / "space-listener-ar.png", full_page=True)

        home = await _open(browser, server.base + "/")
        for lang in ("en", "ar"):
            await home.goto(f"{server.base}/?lang={lang}")
            await home.fill("#admin-token", server.admin_token)
            await home.dispatch_event("#admin-token", "change")
            await home.locator("#admin-token").blur()
            await _wait_text(home, "#spaces bdi", TITLE, within=5)
            assert await _reads_right_to_left(home, "#spaces bdi")
            await home.screenshot(path=shots / f"home-{lang}.png", full_page=True)

        async with http.post(
            f"{server.base}/api/spaces/{space['id']}/end",
            headers={"Authorization": f"Bearer {space['host_token']}"},
        ) as resp:
            assert resp.status == 200, await resp.text()

        # A fresh load of the ended space: the same page now plays the recording.
        await listener.reload()
        await _wait_text(listener, "#play", ar["replay"], within=5)
        assert await listener.is_visible("#ended-notice")
        await install_ear(listener)
        await listener.click("#play")
        replay = await listen_for(listener, TONE, within=15)
        duration = await listener.evaluate("document.getElementById('player').duration")
        assert 1 < duration < 60, f"a replay has a finite length, not {duration}"
        assert replay.current_time < duration, replay
        await listener.screenshot(path=shots / "space-replay-ar.png", full_page=True)
