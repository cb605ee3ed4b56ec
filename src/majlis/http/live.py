"""What listeners fetch: playlists, init, parts, segments and room state.

Every listener asks for the same URLs (no tokens, cookies or per-listener state), so any
HTTP cache in front can coalesce them: the origin serves each object once per edge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from majlis.app import App
from majlis.errors import NotFound, Unavailable
from majlis.guard.middleware import LIMITS, client_of
from majlis.guard.ratelimit import TooManyRequests
from majlis.http.admission import room_state
from majlis.packaging import steering
from majlis.packaging.liveedge import parse_blocking
from majlis.packaging.playlist import render_multivariant
from majlis.rooms.space import Space

routes = web.RouteTableDef()

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MEDIA_TYPE = "audio/mp4"
IMMUTABLE = "public, max-age=31536000, immutable"
# A blocking reload names one future playlist version, which never changes once served.
BLOCKING_CACHE = "public, max-age=6"
LIVE_PLAYLIST_CACHE = "public, max-age=1"
ENDED_PLAYLIST_CACHE = "public, max-age=60"
# RFC 8216bis 6.2.5.2: hold a blocking request at most three target durations.
HOLD_TARGETS = 3
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Age, ETag"}


def _space(request: web.Request) -> tuple[App, Space]:
    app: App = request.app["majlis"]
    return app, app.spaces.get(request.match_info["space_id"])


def _hold_timeout(space: Space) -> float:
    return HOLD_TARGETS * max(1.0, round(space.settings.segment_duration))


@contextmanager
def _held(request: web.Request) -> Iterator[None]:
    """Count a request the server is about to hold; past the caps refuse it at once."""
    limits = request.app[LIMITS]
    client = client_of(request)
    try:
        limits.holds.acquire(client.address, client.exempt, client.prefix)
    except TooManyRequests:
        mine = limits.holds.held_by(client.address) >= limits.holds.per_client
        limits.refuse("held_per_address" if mine else "held_per_network")
        raise
    except Unavailable:
        limits.refuse("held_total")
        raise
    try:
        yield
    finally:
        limits.holds.release(client.address, client.prefix)


def _not_started(space: Space) -> None:
    if space.edge.init is None:
        raise NotFound("this space has not started yet: no audio has been published")


@routes.get("/live/{space_id}/index.m3u8")
async def multivariant(request: web.Request) -> web.Response:
    app, _ = _space(request)
    text = render_multivariant("audio.m3u8", app.settings.aac_bitrate)
    return web.Response(
        text=text,
        content_type=PLAYLIST_TYPE,
        # Not immutable: BANDWIDTH follows the configured bitrate.
        headers={**CORS, "Cache-Control": "public, max-age=300"},
    )


def _pathways(app: App) -> None:
    if not app.settings.pathways:
        raise NotFound(
            "this server lists no pathways (majlis serve --pathway): play index.m3u8 instead"
        )


@routes.get(f"/live/{{space_id}}/{steering.PLAYLIST}")
async def steered(request: web.Request) -> web.Response:
    """index.m3u8 with one variant per pathway (edge) and a content steering manifest."""
    app, space = _space(request)
    _pathways(app)
    text = steering.render_steered(app.settings.pathways, space.id, app.settings.aac_bitrate)
    return web.Response(
        text=text,
        content_type=PLAYLIST_TYPE,
        # Changes only with the configuration (pathways, bitrate), as index.m3u8.
        headers={**CORS, "Cache-Control": "public, max-age=300"},
    )


@routes.get(f"/live/{{space_id}}/{steering.MANIFEST}")
async def steering_manifest(request: web.Request) -> web.Response:
    app, _ = _space(request)
    steering.check_query(request.query.items())
    _pathways(app)
    body = json.dumps(steering.manifest(app.settings.pathways), separators=(",", ":"))
    return web.Response(
        text=body,
        content_type="application/json",
        headers={**CORS, "Cache-Control": steering.CACHE_CONTROL},
    )


@routes.get("/live/{space_id}/audio.m3u8")
async def media_playlist(request: web.Request) -> web.Response:
    _, space = _space(request)
    blocking = parse_blocking(dict(request.query))
    _not_started(space)
    if blocking is not None:
        space.edge.check_blocking(blocking)  # a malformed or too-far request is a 400 first
        if not space.edge.satisfied(blocking):
            with _held(request):
                await space.edge.wait_for(blocking, _hold_timeout(space))
    if space.edge.ended:
        cache = ENDED_PLAYLIST_CACHE
    else:
        cache = BLOCKING_CACHE if blocking is not None else LIVE_PLAYLIST_CACHE
    return web.Response(
        body=space.edge.playlist_bytes(skip="_HLS_skip" in request.query),
        content_type=PLAYLIST_TYPE,
        charset="utf-8",
        headers={**CORS, "Cache-Control": cache},
    )


@routes.get("/live/{space_id}/init.mp4")
async def init(request: web.Request) -> web.Response:
    _, space = _space(request)
    _not_started(space)
    assert space.edge.init is not None
    return _media(space.edge.init)


def _media(data: bytes) -> web.Response:
    return web.Response(
        body=data, content_type=MEDIA_TYPE, headers={**CORS, "Cache-Control": IMMUTABLE}
    )


def _index(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise NotFound(f"no such {what}")
    return int(text)


@routes.get(r"/live/{space_id}/s/{msn:\d+}.m4s")
async def segment(request: web.Request) -> web.StreamResponse:
    _, space = _space(request)
    msn = _index(request.match_info["msn"], "segment")
    if msn >= space.edge.next_msn:
        raise NotFound(f"segment {msn} does not exist (yet)")
    path = space.recording.segment_path(msn)
    return web.FileResponse(
        path, headers={**CORS, "Cache-Control": IMMUTABLE, "Content-Type": MEDIA_TYPE}
    )


@routes.get(r"/live/{space_id}/p/{msn:\d+}.{index:\d+}.m4s")
@routes.get(r"/live/{space_id}/p/{run:\d+}/{msn:\d+}.{index:\d+}.m4s")
async def part(request: web.Request) -> web.Response:
    app, space = _space(request)
    msn = _index(request.match_info["msn"], "part")
    index = _index(request.match_info["index"], "part")
    run = _index(request.match_info.get("run", "0"), "run")
    if run != space.edge.run_of(msn):
        # A part of a segment lost in a crash, or of one not made yet in this run.
        raise NotFound(f"part {msn}.{index} of run {run} does not exist")
    data = space.edge.part(msn, index)
    if data is None and not space.edge.has_part(msn, index):
        # A preload hint: hold the request until the part is written.
        with _held(request):
            await space.edge.wait_for_part(msn, index, _hold_timeout(space))
        data = space.edge.part(msn, index)
    if data is None and space.edge.has_part(msn, index):
        data = await request.loop.run_in_executor(
            app.spaces.disk, space.recording.read_part, msn, index
        )
    if data is None:
        raise NotFound(f"part {msn}.{index} does not exist")
    return _media(data)


@routes.get("/live/{space_id}/state.json")
async def state(request: web.Request) -> web.Response:
    _, space = _space(request)
    # Whether a new listener must solve a proof of work or wait in line first.
    document = {**space.state(), **room_state(request, space.id)}
    body = json.dumps(document, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
    headers = {**CORS, "Cache-Control": "public, max-age=1", "ETag": etag}
    # RFC 9110 13.1.2: a list of tags, weak ones compared by their opaque part, or "*".
    wanted = {
        t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")
    }
    if etag in wanted or "*" in wanted:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)
