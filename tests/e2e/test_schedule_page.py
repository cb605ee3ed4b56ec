"""Scheduling from the home page in real Chromium: the admin creates a space with a
description, a language and a start time; the list shows the start; the space page shows
the description, the start in the page's language and a calendar file that says the same
instant."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from majlis.http.pages import strings
from tests.support.browser import chromium, make_tone_wav
from tests.support.server import RunningServer


@pytest.mark.parametrize("lang", ["en", "ar"])
async def test_schedule_a_space_from_the_home_page(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path, lang: str
) -> None:
    t = strings(lang)
    # A whole minute, two days ahead, in UTC: the browser runs in UTC here (TZ is unset).
    starts = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    async with chromium(make_tone_wav(tmp_path / "silent.wav")) as browser:
        page = await (await browser.new_context(timezone_id="UTC")).new_page()
        await page.goto(f"{server.base}/?lang={lang}")
        await page.fill("#admin-token", server.admin_token)
        await page.fill("#title", "حوار الأربعاء")
        await page.fill("#description", "A weekly talk")
        assert await page.input_value("#language") == lang
        await page.fill("#starts-at", starts.strftime("%Y-%m-%dT%H:%M"))
        await page.get_by_role("button", name=t["create"]).click()
        await page.wait_for_selector("#created:not([hidden])", timeout=10_000)
        item = page.locator("#spaces li", has_text="حوار الأربعاء")
        await item.locator("time").wait_for(timeout=5_000)
        assert await item.locator("time").get_attribute("datetime") == starts.strftime(
            "%Y-%m-%dT%H:%M:00.000Z"
        )

        await item.locator("a").click()
        await page.wait_for_selector("#schedule:not([hidden])", timeout=10_000)
        assert await page.inner_text("#description") == "A weekly talk"
        assert (await page.inner_text("#starts")).startswith(t["starts"])
        href = await page.get_attribute("#ics", "href")
        assert href is not None and href.endswith("/event.ics")
    async with http.get(server.base + href) as resp:
        assert resp.status == 200 and resp.content_type == "text/calendar"
        ics = await resp.text()
    assert ics.startswith("BEGIN:VCALENDAR\r\n")
    assert re.search(f"^SUMMARY;LANGUAGE={lang}:حوار الأربعاء\r$", ics, re.M), ics
    match = re.search(r"^DTSTART:(\d{8}T\d{6}Z)\r$", ics, re.M)
    assert match and match[1] == starts.strftime("%Y%m%dT%H%M%SZ"), ics
