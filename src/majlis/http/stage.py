"""What listeners do with the stage over HTTP: join, raise a hand, accept an invitation, react.

Listeners are many, so none of this holds a connection: a listener joins once for an
anonymous listener token (its subject is their identity in this space) and sends single
requests with it. Hosts, co-hosts and speakers act through the control WebSocket
(majlis.http.control); every request here is authorized against the current stage.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from majlis.app import App
from majlis.errors import BadRequest, Conflict
from majlis.guard.middleware import client_of
from majlis.guard.ratelimit import TokenBuckets, TooManyRequests
from majlis.http.auth import is_admin
from majlis.http.body import read_json_object
from majlis.rooms.roles import require, resolve
from majlis.rooms.space import Space
from majlis.rooms.stage import HOSTS, Actor, clean_name
from majlis.rooms.tokens import Claims, Role, bearer

routes = web.RouteTableDef()

# What a listener is shown, and agrees to, before stepping on the stage; stored with the time.
CONSENT_NOTICE = (
    "This space is recorded: what you say on stage is heard live and kept in the replay."
)
# Listener tokens per address: a burst, then a steady rate (a page joins once).
JOIN_BURST = 30.0
JOIN_RATE_PER_S = 0.5
NO_STORE = {"Cache-Control": "no-store"}


class ConsentRequired(BadRequest):
    code = "consent_required"


JOINS = web.AppKey("stage_joins", TokenBuckets)


def setup(web_app: web.Application) -> None:
    """State the routes need; the routes themselves are served with majlis.http.api's."""
    web_app[JOINS] = TokenBuckets(JOIN_BURST, JOIN_RATE_PER_S)


def _context(request: web.Request) -> tuple[App, Space]:
    app: App = request.app["majlis"]
    return app, app.spaces.get(request.match_info["space_id"])


def verified(app: App, token: str) -> Claims:
    return app.signer.verify(token, app.clock.wall())


def actor_of(app: App, request: web.Request, space: Space) -> tuple[Actor, Claims]:
    """Who sent this request, with their current role; revoked or banned tokens fail here."""
    claims = verified(app, bearer(request.headers.get("Authorization")))
    return resolve(space.stage, claims, space.id), claims


def _not_ended(space: Space) -> None:
    if space.ended:
        raise Conflict("this space has ended")


@routes.post("/api/spaces/{space_id}/listeners/join")
async def join(request: web.Request) -> web.Response:
    app, space = _context(request)
    _not_ended(space)
    now = app.clock.wall()
    limiter = request.app[JOINS]
    client = client_of(request)
    key = client.address
    if not client.exempt and not limiter.allow(key, now):
        raise TooManyRequests(
            "too many listener tokens from this address", limiter.retry_after(key)
        )
    subject = "l-" + secrets.token_hex(6)
    expires = app.spaces.token_expiry()
    token = app.signer.issue(space.id, Role.LISTENER, expires, subject)
    body = {"id": subject, "listener_token": token, "expires_at": int(expires)}
    return web.json_response(body, status=201, headers=NO_STORE)


@routes.get("/api/spaces/{space_id}/listeners/me")
async def me(request: web.Request) -> web.Response:
    app, space = _context(request)
    actor, _ = actor_of(app, request, space)
    stage = space.stage
    body: dict[str, Any] = {
        "id": actor.subject,
        "role": actor.role.value,
        "status": stage.status_of(actor.subject),
        "hands_ahead": _ahead(space, actor.subject),
    }
    if (invitation := stage.invitations.get(actor.subject)) is not None:
        body["invitation"] = {"at": invitation.at, "consent_notice": CONSENT_NOTICE}
    return web.json_response(body, headers=NO_STORE)


def _ahead(space: Space, subject: str) -> int | None:
    queue = list(space.stage.hands)
    return queue.index(subject) if subject in queue else None


@routes.post("/api/spaces/{space_id}/hand")
async def raise_hand(request: web.Request) -> web.Response:
    app, space = _context(request)
    _not_ended(space)
    actor, _ = actor_of(app, request, space)
    body = await read_json_object(request, app.settings.max_json_bytes)
    try:
        name = clean_name(body.get("name"), "listener")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    hand = await space.act(lambda: space.stage.raise_hand(actor, name, app.clock.wall()))
    body = {"id": actor.subject, "name": hand.name, "position": _ahead(space, actor.subject)}
    return web.json_response(body, status=201, headers=NO_STORE)


@routes.delete("/api/spaces/{space_id}/hand")
async def lower_hand(request: web.Request) -> web.Response:
    app, space = _context(request)
    actor, _ = actor_of(app, request, space)
    await space.act(lambda: space.stage.lower_hand(actor))
    return web.Response(status=204, headers=NO_STORE)


@routes.post("/api/spaces/{space_id}/invitation/accept")
async def accept(request: web.Request) -> web.Response:
    app, space = _context(request)
    _not_ended(space)
    actor, _ = actor_of(app, request, space)
    body = await read_json_object(request, app.settings.max_json_bytes)
    if body.get("consent") is not True:
        raise ConsentRequired(f'send "consent": true to go on stage. {CONSENT_NOTICE}')
    now = app.clock.wall()
    member = space.stage.accept(actor, now)
    token = app.signer.issue(space.id, Role.SPEAKER, app.spaces.token_expiry(), actor.subject)
    member.token_id = verified(app, token).token_id
    await app.db.add_consent(space.id, actor.subject, member.name, CONSENT_NOTICE, now)
    await space.act(lambda: member)
    payload = {
        "id": actor.subject,
        "role": member.role.value,
        "speaker_token": token,
        "whip_url": f"/whip/{space.id}",
        "consent": {"notice": CONSENT_NOTICE, "at": now},
    }
    return web.json_response(payload, headers=NO_STORE)


@routes.post("/api/spaces/{space_id}/invitation/decline")
async def decline(request: web.Request) -> web.Response:
    app, space = _context(request)
    actor, _ = actor_of(app, request, space)
    await space.act(lambda: space.stage.decline(actor))
    return web.Response(status=204, headers=NO_STORE)


@routes.post("/api/spaces/{space_id}/reactions")
async def react(request: web.Request) -> web.Response:
    app, space = _context(request)
    _not_ended(space)
    actor, _ = actor_of(app, request, space)
    if not actor.subject:
        raise BadRequest("reactions need a token that names a person (join as a listener)")
    body = await read_json_object(request, app.settings.max_json_bytes)
    try:
        space.reactions.add(actor.subject, body.get("emoji"), app.clock.wall())
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return web.Response(status=204, headers=NO_STORE)


@routes.get("/api/spaces/{space_id}/consents")
async def consents(request: web.Request) -> web.Response:
    app, space = _context(request)
    if not is_admin(app, request):
        actor, _ = actor_of(app, request, space)
        require(actor, *HOSTS)
    rows = await app.db.consents(space.id)
    items = [{"id": s, "name": n, "notice": t, "at": at} for s, n, t, at in rows]
    return web.json_response({"consents": items}, headers=NO_STORE)
