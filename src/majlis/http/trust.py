"""Evidence anyone can fetch: the server's key, each space's provenance document, clips."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from majlis.app import App
from majlis.errors import BadRequest, Conflict, NotFound
from majlis.http.body import read_json_object
from majlis.rooms.space import Space
from majlis.trust import clip, provenance

routes = web.RouteTableDef()

CORS = {"Access-Control-Allow-Origin": "*"}
# Updated with every segment, like the live playlist.
LIVE_CACHE = "public, max-age=1"
# Signed once the space has ended; it never changes afterwards.
SEALED_CACHE = "public, max-age=86400"
# Far past any replay's length; NaN and infinity pass this test and are refused by clip.select.
MAX_SECONDS = 1e15


@routes.get("/.well-known/majlis-signing-key")
async def signing_key(request: web.Request) -> web.Response:
    app: App = request.app["majlis"]
    headers = {**CORS, "Cache-Control": "public, max-age=3600"}
    return web.json_response(app.signing_key.public.describe(), headers=headers)


@routes.get("/live/{space_id}/provenance.json")
async def provenance_document(request: web.Request) -> web.Response:
    app: App = request.app["majlis"]
    space = app.spaces.get(request.match_info["space_id"])
    log = space.provenance
    facts = provenance.SpaceFacts(space.id, space.title, space.started_at, space.ended_at)
    if log.sealed is not None:
        body, cache = log.sealed, SEALED_CACHE
    elif (live := log.live_json(facts, app.signing_key.key_id)) is not None:
        body, cache = live, LIVE_CACHE
    else:
        raise NotFound("this space has not started yet: nothing was recorded")
    return web.Response(
        body=body, content_type="application/json", headers={**CORS, "Cache-Control": cache}
    )


def _sealed(space: Space) -> dict[str, Any]:
    document = space.provenance.sealed_document()
    if document is None:
        raise Conflict("clips are cut from ended replays: this space has not ended")
    return document


def _segments(space: Space) -> list[clip.SourceSegment]:
    cuts = frozenset(s.msn for s in space.edge.segments if s.discontinuity)
    return clip.source_segments(_sealed(space), cuts)


def _number(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    # JSON integers have no bound: float() raises OverflowError past 1e308.
    if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > MAX_SECONDS:
        raise BadRequest(f"'{name}' is required and must be a number of seconds")
    return float(value)


@routes.post("/api/spaces/{space_id}/clips")
async def create_clip(request: web.Request) -> web.Response:
    """Anyone may cut a clip of a public replay: nothing is stored, so nothing can fill up."""
    app: App = request.app["majlis"]
    space = app.spaces.get(request.match_info["space_id"])
    body = await read_json_object(request, app.settings.max_json_bytes)
    start, end = _number(body, "from"), _number(body, "to")
    segments = _segments(space)
    try:
        cut = clip.select(space.id, segments, start, end)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    summary = clip.document(cut, _sealed(space))
    urls = {
        "playlist_url": f"/clips/{cut.clip_id}/audio.m3u8",
        "clip_url": f"/clips/{cut.clip_id}/clip.json",
    }
    payload = {
        "clip_id": cut.clip_id,
        **urls,
        **{k: summary[k] for k in ("from", "to", "first_msn", "last_msn")},
        "segments": len(summary["segments"]),
    }
    return web.json_response(payload, status=201, headers={"Location": urls["playlist_url"]})


def _clip(request: web.Request) -> tuple[Space, clip.ClipRange]:
    app: App = request.app["majlis"]
    try:
        cut = clip.parse_clip_id(request.match_info["clip_id"])
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    space = app.spaces.get(cut.space_id)
    if space.provenance.sealed_document() is None:
        raise NotFound("no such clip: its space has not ended")
    return space, cut


@routes.get("/clips/{clip_id}/audio.m3u8")
async def clip_playlist(request: web.Request) -> web.Response:
    space, cut = _clip(request)
    try:
        text = clip.playlist(cut, _segments(space))
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    headers = {**CORS, "Cache-Control": SEALED_CACHE}
    return web.Response(text=text, content_type="application/vnd.apple.mpegurl", headers=headers)


@routes.get("/clips/{clip_id}/clip.json")
async def clip_document(request: web.Request) -> web.Response:
    space, cut = _clip(request)
    try:
        document = clip.document(cut, _sealed(space))
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    headers = {**CORS, "Cache-Control": SEALED_CACHE}
    return web.Response(
        body=provenance.to_json(document), content_type="application/json", headers=headers
    )
