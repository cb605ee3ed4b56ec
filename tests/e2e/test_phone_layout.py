"""The pages on a phone, in English and in Arabic: a host on stage with a raised hand in the
console, a listener taking part, and the home page, in a 360 px wide viewport (a small
Android phone) with touch. Nothing may scroll sideways or sit outside the screen, every
control must be big enough to tap, and in Arabic the page must run right to left.

Screenshots go to $MAJLIS_SCREENSHOTS (docs/screenshots to refresh the docs), else tmp_path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from majlis.http.pages import strings
from tests.support.browser import chromium, make_tone_wav
from tests.support.server import RunningServer

PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 740},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
# Long words and mixed directions are what overflow a narrow screen.
TITLE = "Town hall: Dr. Abdulrahman Al-Fulani مع مجلس الحي والمجتمع المحلي"
GUEST = "عبدالرحمن بن عبدالعزيز الفلاني"
TAP_PX = 44  # the smallest comfortable touch target (WCAG 2.5.5, Apple and Android guides)

# Every visible control and text block that leaves the screen, and every control too small
# to tap. Inline elements inside a line are judged by their box.
_LAYOUT = """(tap) => {
  const width = document.documentElement.clientWidth;
  const out = [], small = [];
  const name = (el) => el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}.${el.className}`;
  for (const el of document.querySelectorAll("button, input, audio, meter, a, h1, h2, h3, p, li")) {
    const r = el.getBoundingClientRect();
    if (!el.checkVisibility() || r.width === 0) continue;
    if (r.left < -0.5 || r.right > width + 0.5) out.push(`${name(el)} [${r.left}, ${r.right}]`);
    if (el.matches("button, input") && r.height < tap) small.push(`${name(el)} ${r.height}px`);
  }
  return {
    scrollWidth: document.documentElement.scrollWidth, width, out, small,
    dir: document.documentElement.dir,
  };
}"""


async def _phone(browser: Browser, url: str) -> Page:
    context = await browser.new_context(**PHONE)
    page = await context.new_page()
    await page.goto(url)
    return page


async def _until(page: Page, script: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await page.evaluate(script):
        assert time.monotonic() < deadline, f"never true: {script}"
        await page.wait_for_timeout(100)


async def _fits(page: Page, lang: str, what: str, shots: Path) -> None:
    await page.screenshot(path=shots / f"phone-{what}-{lang}.png", full_page=True)
    layout = await page.evaluate(_LAYOUT, TAP_PX)
    assert layout["dir"] == ("rtl" if lang == "ar" else "ltr"), layout
    assert layout["scrollWidth"] <= layout["width"], f"{what} ({lang}) scrolls sideways: {layout}"
    assert not layout["out"], f"{what} ({lang}): off the screen: {layout['out']}"
    assert not layout["small"], f"{what} ({lang}): too small to tap: {layout['small']}"


async def _starts_at_inline_start(page: Page, lang: str) -> None:
    """The header's first item (the app's name) sits at the reading start: right in Arabic."""
    name = await page.locator("header h1").bounding_box()
    switch = await page.locator("header .lang").bounding_box()
    assert name is not None and switch is not None
    assert (name["x"] > switch["x"]) == (lang == "ar"), (lang, name, switch)


@pytest.mark.parametrize("lang", ["en", "ar"])
async def test_pages_fit_a_phone(
    server: RunningServer, tmp_path: Path, shots: Path, lang: str
) -> None:
    t = strings(lang)
    space = server.create_space(TITLE, description="سؤال وجواب " * 20)
    page_url = f"{server.base}{space['page_url']}?lang={lang}"
    async with chromium(make_tone_wav(tmp_path / "tone.wav")) as browser:
        host = await _phone(browser, f"{page_url}#token={space['host_token']}&raw=1")
        await host.click("#join")
        await _until(host, f"document.getElementById('speaker-status').textContent === "
                           f"{t['you_are_live']!r}")  # fmt: skip

        listener = await _phone(browser, page_url)
        await _until(listener, "!document.getElementById('take-part').hidden")
        await listener.fill("#your-name", GUEST)
        await listener.click("#hand")
        await _until(host, "document.querySelectorAll('#queue li').length === 1")
        await _until(host, "document.querySelectorAll('#stage .speaker').length === 1")

        await _fits(host, lang, "host", shots)
        await _fits(listener, lang, "listener", shots)
        await _starts_at_inline_start(listener, lang)
        # The reactions wrap from the reading start too.
        first = await listener.locator("#reaction-buttons button").first.bounding_box()
        last = await listener.locator("#reaction-buttons button").last.bounding_box()
        assert first is not None and last is not None
        if first["y"] == last["y"]:
            assert (first["x"] > last["x"]) == (lang == "ar"), (first, last)

        home = await _phone(browser, f"{server.base}/?lang={lang}")
        await home.fill("#admin-token", server.admin_token)
        await home.dispatch_event("#admin-token", "change")
        await home.locator("#admin-token").blur()
        await _until(home, "document.querySelector('#spaces bdi') !== null")
        await _fits(home, lang, "home", shots)
        await _starts_at_inline_start(home, lang)
