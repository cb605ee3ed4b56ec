"""The pages over plain HTTP: language choice, direction, escaping, and complete translations."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from importlib import resources

import aiohttp
import pytest

from majlis.rooms.space import Status
from majlis.rooms.tokens import Role
from tests.support.server import RunningServer

WEB = resources.files("majlis.web")
TEMPLATES = ("home.html", "space.html")
SCRIPTS = ("space.js", "home.js")
_T_KEY = re.compile(r"\{\{\s*t\.([a-z0-9_]+)\s*\}\}")
_PLACEHOLDER = re.compile(r"\{\{\s*[a-z0-9_.]+\s*\}\}")
_JS_KEY = re.compile(r"\bT(?:\.([a-z0-9_]+)|\[\"([a-z0-9_]+)\"\])")
_JS_PREFIX = re.compile(r"\bT\[\"([a-z0-9_]+_)\" \+")
_HTML_TAG = re.compile(r'<html lang="([a-z]+)" dir="(ltr|rtl)">')
_ARABIC = re.compile(r"[\u0600-\u06ff]")
# Attributes people read or hear (screen readers): they must come from the string tables.
_READABLE_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description"}
_BUTTON_INPUTS = {"submit", "button", "reset"}


def _strings(lang: str) -> dict[str, str]:
    table: dict[str, str] = json.loads(WEB.joinpath(f"i18n/{lang}.json").read_text("utf-8"))
    return table


def _template(name: str) -> str:
    return WEB.joinpath(f"templates/{name}").read_text("utf-8")


async def _get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[str, str, str]:
    """(language, direction, body) of a served page."""
    async with http.get(url, headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.text()
        match = _HTML_TAG.search(body)
        assert match, body[:300]
        assert resp.headers["Content-Language"] == match.group(1)
        assert "Accept-Language" in resp.headers["Vary"]
        return match.group(1), match.group(2), body


@pytest.mark.parametrize(
    ("query", "accept", "lang", "direction"),
    [
        ("", None, "en", "ltr"),
        ("?lang=ar", None, "ar", "rtl"),
        ("", "ar-SA,ar;q=0.9", "ar", "rtl"),
        ("", "fr-FR,fr;q=0.9", "en", "ltr"),
        ("", "en;q=0.2, ar;q=0.8", "ar", "rtl"),
        ("", "ar;q=0", "en", "ltr"),
        ("?lang=en", "ar-SA,ar;q=0.9", "en", "ltr"),
        ("?lang=xx", "ar", "ar", "rtl"),
    ],
)
async def test_language_and_direction(
    server: RunningServer,
    http: aiohttp.ClientSession,
    query: str,
    accept: str | None,
    lang: str,
    direction: str,
) -> None:
    space = server.create_space("Language test")
    headers = {"Accept-Language": accept} if accept else {}
    for path in ("/", space["page_url"]):
        got_lang, got_dir, body = await _get(http, server.base + path + query, headers)
        assert (got_lang, got_dir) == (lang, direction), path
        # The page arrives in its language before any script runs.
        assert _strings(lang)["app_name"] in body
        embedded = re.search(r'<script id="strings" type="application/json">(.*?)</script>', body)
        assert embedded and json.loads(embedded.group(1)) == _strings(lang)


async def test_titles_are_escaped_and_keep_their_direction(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    hostile = server.create_space('</script><script>alert(1)</script> & "x"')
    _, _, body = await _get(http, server.base + hostile["page_url"])
    assert "<script>alert(1)" not in body
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;" in body

    arabic = server.create_space("Elon Musk مع ترامب")
    for query in ("", "?lang=ar"):
        _, _, body = await _get(http, server.base + arabic["page_url"] + query)
        # A Latin name opening an Arabic sentence: the title is right-to-left on both pages.
        assert '<bdi dir="rtl">Elon Musk مع ترامب</bdi>' in body
        assert "<title>\u2067Elon Musk مع ترامب\u2069 · " in body
    english = server.create_space("Weekly call with أحمد")
    _, _, body = await _get(http, server.base + english["page_url"] + "?lang=ar")
    assert '<bdi dir="ltr">Weekly call with أحمد</bdi>' in body


async def test_unknown_space_page_is_404(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.base + "/s/no-such-space") as resp:
        assert resp.status == 404


def test_both_languages_have_the_same_keys() -> None:
    en, ar = _strings("en"), _strings("ar")
    assert sorted(set(en) - set(ar)) == [], "missing in ar.json"
    assert sorted(set(ar) - set(en)) == [], "missing in en.json"
    untranslated = [k for k, v in ar.items() if not _ARABIC.search(v) and k != "language"]
    assert untranslated == [], "ar.json values without Arabic letters"
    assert all(v.strip() for v in [*en.values(), *ar.values()]), "empty strings"


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_keys_exist(name: str) -> None:
    used = set(_T_KEY.findall(_template(name)))
    assert used, f"{name} uses no strings at all?"
    for lang in ("en", "ar"):
        assert sorted(used - set(_strings(lang))) == [], f"{name} keys missing in {lang}.json"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_keys_exist(name: str) -> None:
    source = WEB.joinpath(f"static/{name}").read_text("utf-8")
    used = {a or b for a, b in _JS_KEY.findall(source)}
    # Keys built from a prefix and a value the server sends: a status or a role.
    values = {"status_": [s.value for s in Status], "role_": [r.value for r in Role]}
    for prefix in _JS_PREFIX.findall(source):
        used |= {prefix + v for v in values[prefix]}
    for lang in ("en", "ar"):
        assert sorted(used - set(_strings(lang))) == [], f"{name} keys missing in {lang}.json"


class _VisibleText(HTMLParser):
    """Collects text a person sees or hears, outside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._hidden_depth += 1
        readable = set(_READABLE_ATTRIBUTES)
        if tag == "input" and dict(attrs).get("type") in _BUTTON_INPUTS:
            readable.add("value")  # the label of an input button
        self.found.extend(value for name, value in attrs if name in readable and value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.found.append(data)


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_hard_coded_ui_text(name: str) -> None:
    parser = _VisibleText()
    parser.feed(_template(name))
    # {{title}} and friends are the user's own words; everything else must be translated.
    leftovers = [_PLACEHOLDER.sub("", text) for text in parser.found]
    words = [text.strip() for text in leftovers if re.search(r"\w", text)]
    assert words == [], f"text in {name} not taken from the string tables"
