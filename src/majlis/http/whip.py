"""WHIP (RFC 9725): publish a speaker's microphone with one HTTP POST."""

from __future__ import annotations

from aiohttp import web

from majlis.app import App
from majlis.errors import Forbidden, NotFound, UnsupportedMediaType
from majlis.http.body import read_limited
from majlis.http.stage import actor_of
from majlis.ingest.sdp import check_offer
from majlis.rooms.roles import require
from majlis.rooms.space import Space
from majlis.rooms.stage import clean_name
from majlis.rooms.tokens import Role

routes = web.RouteTableDef()

MAX_NAME_CHARS = 60
CORS = {
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Patch, Retry-After",
    "Access-Control-Max-Age": "86400",
}


def _app(request: web.Request) -> App:
    app: App = request.app["majlis"]
    return app


def _publisher(app: App, request: web.Request, space: Space) -> None:
    """Only people on the stage (or holding the shared speaker link) touch WHIP sessions."""
    actor, _ = actor_of(app, request, space)
    require(actor, Role.HOST, Role.COHOST, Role.SPEAKER)


@routes.options("/whip/{space_id}")
async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={**CORS, "Accept-Post": "application/sdp"})


@routes.post("/whip/{space_id}")
async def publish(request: web.Request) -> web.Response:
    app = _app(request)
    space = app.spaces.get(request.match_info["space_id"])
    actor, claims = actor_of(app, request, space)
    if actor.role is Role.LISTENER:
        raise Forbidden("listeners publish only after accepting an invitation to the stage")
    if request.content_type != "application/sdp":
        raise UnsupportedMediaType("WHIP offers must be sent as Content-Type: application/sdp")
    body = await read_limited(request, app.settings.max_sdp_bytes)
    offer = check_offer(body, app.settings.max_sdp_bytes)
    name = clean_name(request.query.get("name", ""), "")[:MAX_NAME_CHARS]
    was_started = space.started_at is not None
    session_id, answer = await space.publish(actor, name, offer, claims.token_id)
    if not was_started:
        await app.spaces.mark_started(space)
    location = f"/whip/{space.id}/{session_id}"
    return web.Response(
        status=201,
        body=answer.encode(),
        content_type="application/sdp",
        headers={**CORS, "Location": location, "ETag": f'"{session_id}"'},
    )


@routes.options("/whip/{space_id}/{session_id}")
async def session_preflight(request: web.Request) -> web.Response:
    return web.Response(status=204, headers=CORS)


@routes.get("/whip/{space_id}/{session_id}")
async def session_state(request: web.Request) -> web.Response:
    # A publisher learns at once that its session is gone (dropped, removed, or lost with a
    # node that died and whose space another node took over): its own ICE checks can take
    # most of ten seconds to say so.
    app = _app(request)
    space = app.spaces.get(request.match_info["space_id"])
    _publisher(app, request, space)
    speaker = space.speakers.get(request.match_info["session_id"])
    if speaker is None:
        raise NotFound("no such WHIP session in this space")
    publisher = speaker.publisher
    heard = publisher.last_audio_at
    since = None if heard is None else round(publisher.clock.monotonic() - heard, 3)
    body = {"connection": publisher.pc.connectionState, "seconds_since_audio": since}
    return web.json_response(body, headers={**CORS, "Cache-Control": "no-store"})


@routes.patch("/whip/{space_id}/{session_id}")
async def trickle(request: web.Request) -> web.Response:
    # The answer already carries every server candidate and aiortc cannot add remote ones
    # or restart ICE, so PATCH is not supported (RFC 9725 section 4.3.1 allows 405).
    space = _app(request).spaces.get(request.match_info["space_id"])
    _publisher(_app(request), request, space)
    if request.match_info["session_id"] not in space.speakers:
        raise NotFound("no such WHIP session in this space")
    raise web.HTTPMethodNotAllowed(
        "PATCH",
        ["GET", "POST", "DELETE", "OPTIONS"],
        reason="trickle ICE and ICE restarts are not supported",
    )


@routes.delete("/whip/{space_id}/{session_id}")
async def leave(request: web.Request) -> web.Response:
    app = _app(request)
    space = app.spaces.get(request.match_info["space_id"])
    _publisher(app, request, space)
    await space.unpublish(request.match_info["session_id"])
    return web.Response(status=200, headers=CORS)
