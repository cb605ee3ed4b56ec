"""The JSON API: create, list, inspect and end spaces."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from majlis.app import App
from majlis.cluster.replica import load_snapshots
from majlis.errors import BadRequest
from majlis.http import control, stage
from majlis.http.auth import is_admin, require_admin
from majlis.http.body import read_json_object
from majlis.http.stage import actor_of
from majlis.rooms import calendar
from majlis.rooms.registry import parse_schedule
from majlis.rooms.roles import require
from majlis.rooms.space import Space
from majlis.rooms.tokens import Role
from majlis.storage.database import SpaceRow

routes = web.RouteTableDef()


def _app(request: web.Request) -> App:
    app: App = request.app["majlis"]
    return app


def space_urls(space_id: str) -> dict[str, str]:
    return {
        "whip_url": f"/whip/{space_id}",
        "playlist_url": f"/live/{space_id}/audio.m3u8",
        "multivariant_url": f"/live/{space_id}/index.m3u8",
        "state_url": f"/live/{space_id}/state.json",
        "page_url": f"/s/{space_id}",
        "control_url": f"/api/spaces/{space_id}/control",
        "listener_join_url": f"/api/spaces/{space_id}/listeners/join",
        "event_url": f"/api/spaces/{space_id}/event.ics",
    }


def space_summary(space: Space | SpaceRow) -> dict[str, Any]:
    return {
        "id": space.id,
        "title": space.title,
        "description": space.description,
        "language": space.language,
        "status": space.status if isinstance(space, SpaceRow) else space.status.value,
        "starts_at": space.starts_at,
        "created_at": space.created_at,
        "started_at": space.started_at,
        "ended_at": space.ended_at,
        **space_urls(space.id),
    }


@routes.post("/api/spaces")
async def create_space(request: web.Request) -> web.Response:
    app = _app(request)
    require_admin(app, request)
    if app.cluster is not None:
        app.cluster.require_store()
    body = await read_json_object(request, app.settings.max_json_bytes)
    title = body.get("title")
    if not isinstance(title, str):
        raise BadRequest("'title' is required and must be a string")
    try:
        created = await app.spaces.create(title, parse_schedule(body, app.clock.wall()))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    space = created.space
    if app.cluster is not None:
        await app.cluster.created(space.id)
    links = {
        "host_link": f"/s/{space.id}#token={created.host_token}",
        "speaker_link": f"/s/{space.id}#token={created.speaker_token}",
        "listen_link": f"/s/{space.id}",
    }
    payload = {
        **space_summary(space),
        "host_token": created.host_token,
        "speaker_token": created.speaker_token,
        **links,
    }
    return web.json_response(payload, status=201, headers={"Location": f"/api/spaces/{space.id}"})


@routes.get("/api/spaces")
async def list_spaces(request: web.Request) -> web.Response:
    app = _app(request)
    require_admin(app, request)
    if app.cluster is not None:
        # Every node's spaces, as the cluster's shared store knows them.
        rows = [snap.row for snap in await load_snapshots(app.cluster.link)]
        return web.json_response({"spaces": [space_summary(r) for r in rows]})
    return web.json_response({"spaces": [space_summary(s) for s in app.spaces.all()]})


@routes.get("/api/spaces/{space_id}")
async def get_space(request: web.Request) -> web.Response:
    space = _app(request).spaces.get(request.match_info["space_id"])
    return web.json_response({**space_summary(space), **space.state()})


@routes.post("/api/spaces/{space_id}/end")
async def end_space(request: web.Request) -> web.Response:
    app = _app(request)
    space = app.spaces.get(request.match_info["space_id"])
    if not is_admin(app, request):
        actor, _ = actor_of(app, request, space)
        require(actor, Role.HOST)
    await app.spaces.end(space)
    return web.json_response(space_summary(space))


@routes.get("/api/spaces/{space_id}/event.ics")
async def event(request: web.Request) -> web.Response:
    """The space as a calendar event: its scheduled start, else when it started or was made."""
    app = _app(request)
    space = app.spaces.get(request.match_info["space_id"])
    starts = space.starts_at or space.started_at or space.created_at
    origin = f"{request.scheme}://{request.host}"
    body = calendar.event(
        uid=f"{space.id}@majlis",
        title=space.title,
        description=space.description,
        url=f"{origin}/s/{space.id}",
        starts_at=starts,
        stamp=space.created_at,
        language=space.language,
    )
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={
            "Cache-Control": "public, max-age=60",
            "Content-Disposition": f'attachment; filename="{space.id}.ics"',
        },
    )


# The stage's routes for listeners and the participants' control socket are part of this API.
for _table in (stage.routes, control.routes):
    for _route in _table:
        assert isinstance(_route, web.RouteDef)
        routes.route(_route.method, _route.path, **_route.kwargs)(_route.handler)
