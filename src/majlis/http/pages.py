"""The pages people use, rendered in their language before any script runs."""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from majlis.app import App
from majlis.packaging import steering

routes = web.RouteTableDef()

LANGUAGES = ("en", "ar")
RTL = {"ar"}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z0-9_.]+)\s*\}\}")
# Hebrew, Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic and their presentation forms.
_RTL_LETTER = re.compile(r"[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
# Unicode directional isolates (UAX #9) for plain-text places where <bdi> cannot go.
_ISOLATE = {"ltr": "\u2066", "rtl": "\u2067"}
_POP_ISOLATE = "\u2069"


@cache
def strings(lang: str) -> dict[str, str]:
    text = resources.files("majlis.web").joinpath(f"i18n/{lang}.json").read_text("utf-8")
    value: dict[str, str] = json.loads(text)
    return value


@cache
def template(name: str) -> str:
    return resources.files("majlis.web").joinpath(f"templates/{name}").read_text("utf-8")


def choose_language(query_lang: str | None, accept_language: str | None) -> str:
    """``?lang=`` first, then the browser's preferences by q-value, then English."""
    if query_lang in LANGUAGES:
        return query_lang
    ranked: list[tuple[float, int, str]] = []
    # A header of hundreds of tags is not a browser's: the first few decide.
    for position, item in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = item.partition(";")
        primary = tag.strip().lower().split("-")[0]
        quality = _quality(params)
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else "en"


def _quality(params: str) -> float:
    # RFC 9110 12.4.2: "q=" weighs a preference from 0 (not acceptable) to 1 (the default).
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "q":
            try:
                return min(1.0, max(0.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def text_direction(text: str) -> str:
    """'rtl' or 'ltr' for a user's text such as a space title.

    Arabic titles often open with a Latin name ("Elon Musk مع ترامب"); dir="auto" follows the
    first strong letter and would lay those out left to right, with the Arabic words in the
    wrong order for an Arabic reader. A fair share of right-to-left letters makes the whole
    title right-to-left instead. home.js applies the same rule to the list of spaces.
    """
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "ltr"
    rtl = sum(1 for ch in letters if _RTL_LETTER.match(ch))
    return "rtl" if rtl / len(letters) >= 0.3 else "ltr"


def isolated(text: str) -> str:
    """``text`` wrapped in a directional isolate, for <title> and other plain text."""
    return _ISOLATE[text_direction(text)] + text + _POP_ISOLATE


def render(name: str, lang: str, values: dict[str, Any]) -> str:
    table = strings(lang)
    context = {
        "lang": lang,
        "dir": "rtl" if lang in RTL else "ltr",
        "other_lang": "en" if lang == "ar" else "ar",
        "strings_json": json.dumps(table, ensure_ascii=False),
        **{k: html.escape(str(v)) for k, v in values.items()},
    }

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key.startswith("t."):
            return html.escape(table[key[2:]])
        if key == "strings_json":
            return context[key].replace("</", "<\\/")
        return str(context[key])

    return _PLACEHOLDER.sub(fill, template(name))


def _page(request: web.Request, name: str, values: dict[str, Any]) -> web.Response:
    lang = choose_language(request.query.get("lang"), request.headers.get("Accept-Language"))
    body = render(name, lang, values)
    return web.Response(
        text=body,
        content_type="text/html",
        headers={"Content-Language": lang, "Vary": "Accept-Language", "Cache-Control": "no-cache"},
    )


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    return _page(request, "home.html", {})


@routes.get("/s/{space_id}")
async def space_page(request: web.Request) -> web.Response:
    app: App = request.app["majlis"]
    space = app.spaces.get(request.match_info["space_id"])
    values = {
        "space_id": space.id,
        "title": space.title,
        "title_dir": text_direction(space.title),
        "title_isolated": isolated(space.title),
        # With pathways the player follows the steered playlist, so it can move to another
        # edge when its own stops answering.
        "playlist": steering.PLAYLIST if app.settings.pathways else "audio.m3u8",
    }
    return _page(request, "space.html", values)


def add_static(web_app: web.Application) -> None:
    folder = resources.files("majlis.web").joinpath("static")
    web_app.router.add_static("/static/", str(folder), append_version=False)
