"""The participants' control WebSocket: `/api/spaces/{id}/control`.

For the few people of the stage (host, co-hosts, speakers, and listeners while their hand is
raised or they are invited), never for the audience at large. The token comes in the
`Authorization` header, in `Sec-WebSocket-Protocol` as `bearer.<token>` (what a browser can
send), or in a first `{"type": "auth", "token": ...}` message; never in the URL, which gets
logged. Every message is authorized against the current stage; the server pushes each
person's view of the room whenever it changes. Protocol: docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from majlis.app import App
from majlis.errors import BadRequest, Conflict, MajlisError, Unavailable
from majlis.guard.ratelimit import TokenBuckets
from majlis.http import stage as listener_routes
from majlis.http.stage import verified
from majlis.rooms.roles import require, resolve
from majlis.rooms.space import Space
from majlis.rooms.stage import HOSTS, Actor
from majlis.rooms.tokens import Claims, Role, bearer

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PROTOCOL = "majlis.control"
BEARER_PROTOCOL = "bearer."
MAX_MESSAGE_BYTES = 4096
# Per connection: a burst of 20 messages, then 10 a second; past that, errors, and a client
# that keeps going past MAX_REFUSED refusals is closed (1008, policy violation).
MESSAGE_BURST = 20.0
MESSAGES_PER_S = 10.0
MAX_REFUSED = 50
MAX_CONNECTIONS_PER_SPACE = 64
MAX_CONNECTIONS_PER_PERSON = 4
AUTH_TIMEOUT_S = 5.0
MAX_ID_CHARS = 64
# Close codes (RFC 6455 7.4.2 leaves 4000-4999 to applications), after HTTP's own numbers.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_IDLE = 4408
CLOSE_ENDED = 4410


def close_code(exc: MajlisError) -> int:
    """Bad or missing credentials close with 4401; a refusal of who you are with 4403."""
    return CLOSE_UNAUTHORIZED if exc.status in (400, 401) else CLOSE_FORBIDDEN


class UpgradeRequired(MajlisError):
    status = 426
    code = "upgrade_required"


def _app(request: web.Request) -> App:
    app: App = request.app["majlis"]
    return app


def _header_token(request: web.Request) -> str | None:
    if "Authorization" in request.headers:
        return bearer(request.headers["Authorization"])
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    for item in offered.split(","):
        if item.strip().startswith(BEARER_PROTOCOL):
            return item.strip()[len(BEARER_PROTOCOL) :]
    return None


class Connection:
    """One participant's socket: reads requests, pushes their view when the room changes."""

    def __init__(self, app: App, space: Space, ws: web.WebSocketResponse, claims: Claims) -> None:
        self.app = app
        self.space = space
        self.ws = ws
        self.claims = claims
        self.wake = asyncio.Event()
        self.limiter = TokenBuckets(MESSAGE_BURST, MESSAGES_PER_S, 1)
        self.refused = 0
        self.last_view = ""
        self.pusher_closing = False
        # The host ended the space from this socket: the reply goes first, then the close.
        self.ending = False

    def actor(self) -> Actor:
        return resolve(self.space.stage, self.claims, self.space.id)

    async def run(self) -> None:
        self.space.watchers.add(self.wake)
        pusher = asyncio.create_task(self._push())
        try:
            await self._read()
        finally:
            self.space.watchers.discard(self.wake)
            # A close started by the pusher must finish (send its code), not be cancelled.
            if not self.pusher_closing:
                pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher

    async def _read(self) -> None:
        idle = self.app.settings.control_idle_timeout
        while not self.ws.closed:
            try:
                message = await self.ws.receive(timeout=idle)
            except TimeoutError:
                await self.ws.close(code=CLOSE_IDLE, message=b"idle: send a ping now and then")
                return
            if message.type is WSMsgType.TEXT:
                await self._handle_text(message.data)
            elif message.type is WSMsgType.BINARY:
                await self.ws.close(
                    code=WSCloseCode.UNSUPPORTED_DATA, message=b"JSON text frames only"
                )
            elif message.type is WSMsgType.ERROR:
                # aiohttp closes oversized frames itself (1009); nothing else to do here.
                return
            else:
                return

    async def _handle_text(self, text: str) -> None:
        now = self.app.clock.monotonic()
        if not self.limiter.allow("c", now):
            self.refused += 1
            if self.refused > MAX_REFUSED:
                await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"too many messages")
                return
            await self._error(None, 429, "too_many_requests", "too many messages: slow down")
            return
        request_id: Any = None
        try:
            message = _parse(text)
        except Malformed as exc:
            # Not a message at all: this client does not speak the protocol. Close only this
            # connection, saying why (1007: data inconsistent with the message type).
            await self.ws.close(code=WSCloseCode.INVALID_TEXT, message=exc.message.encode()[:120])
            return
        except MajlisError as exc:
            await self._error(None, exc.status, exc.code, exc.message)
            return
        try:
            request_id = message.get("id")
            reply = await self._dispatch(message)
        except MajlisError as exc:
            await self._error(request_id, exc.status, exc.code, exc.message)
            # A token that stopped working closes the socket too (the pusher says why).
            self.wake.set()
            return
        except Exception:
            # A bug must cost one answer, not the socket or the server.
            log.exception("control message failed in space %s", self.space.id)
            await self._error(request_id, 500, "internal", "internal server error")
            return
        await self._send({"type": "ok", "id": request_id, **reply})
        if self.ending:
            await self.ws.close(code=CLOSE_ENDED, message=b"the space has ended")

    async def _dispatch(self, message: dict[str, Any]) -> dict[str, Any]:
        kind = message["type"]
        actor = self.actor()  # every message is authorized against the stage as it is now
        handler = HANDLERS.get(kind)
        if handler is None:
            raise BadRequest(f"unknown message type {str(kind)[:40]!r}")
        return await handler(self, actor, message)

    async def _push(self) -> None:
        """Send this person's view whenever the room changed (and once at the start)."""
        self.wake.set()
        while not self.ws.closed:
            await self.wake.wait()
            self.wake.clear()
            try:
                actor = self.actor()
            except MajlisError as exc:
                await self._close(close_code(exc), exc.message)
                return
            view = json.dumps(view_for(self.space, actor), separators=(",", ":"))
            if view != self.last_view:
                self.last_view = view
                await self._send_text(view)
            if self.space.ended and not self.ending:
                await self._close(CLOSE_ENDED, "the space has ended")
                return

    async def _close(self, code: int, reason: str) -> None:
        self.pusher_closing = True
        await self.ws.close(code=code, message=reason.encode()[:120])

    async def _send(self, payload: dict[str, Any]) -> None:
        await self._send_text(json.dumps(payload, separators=(",", ":")))

    async def _send_text(self, text: str) -> None:
        # A peer that vanished mid-send is the reader's to notice, not an error here.
        with contextlib.suppress(ConnectionError):
            if not self.ws.closed:
                await self.ws.send_str(text)

    async def _error(self, request_id: Any, status: int, code: str, detail: str) -> None:
        await self._send(
            {"type": "error", "id": request_id, "error": code, "status": status, "detail": detail}
        )


class Malformed(BadRequest):
    """A frame that is not a JSON object: closes the connection instead of an error reply."""


def _parse(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise Malformed("message is not valid JSON") from None
    if not isinstance(message, dict):
        raise Malformed("message must be a JSON object")
    request_id = message.get("id")
    ok_id = request_id is None or (
        isinstance(request_id, str | int)
        and not isinstance(request_id, bool)
        and len(str(request_id)) <= MAX_ID_CHARS
    )
    if not ok_id:
        message["id"] = None
        raise BadRequest(f"id must be a string or an integer of at most {MAX_ID_CHARS} chars")
    if not isinstance(message.get("type"), str):
        raise BadRequest('every message needs a "type" string')
    return message


def _target(message: dict[str, Any], actor: Actor | None = None) -> str:
    target = message.get("target")
    if target is None and actor is not None:
        return actor.subject
    if not isinstance(target, str) or not 0 < len(target) <= MAX_ID_CHARS:
        raise BadRequest('"target" must be the id of a person (a string)')
    return target


def view_for(space: Space, actor: Actor) -> dict[str, Any]:
    """What this person sees: the public room, plus the queue for hosts, plus their own
    invitation and microphone."""
    stage = space.stage
    member = stage.members.get(actor.subject)
    public = space.state()
    view: dict[str, Any] = {
        "type": "state",
        "version": stage.version,
        "status": public["status"],
        "stage": [
            {**entry, "locked": stage.members[entry["id"]].locked} for entry in public["stage"]
        ],
        "hands": public["hands"],
        "you": {
            "id": actor.subject,
            "role": actor.role.value,
            "status": stage.status_of(actor.subject),
            "muted": member.muted if member else None,
            "locked": member.locked if member else None,
        },
    }
    # Levels change every tick: a view is pushed on stage changes, not on levels.
    for entry in view["stage"]:
        entry.pop("level_dbfs", None)
        entry.pop("talking", None)
    if actor.role in HOSTS:
        view["queue"] = [
            {"id": h.subject, "name": h.name, "raised_at": h.raised_at}
            for h in stage.hands.values()
        ]
        view["invitations"] = [
            {"id": i.subject, "name": i.name, "invited_by": i.invited_by, "at": i.at}
            for i in stage.invitations.values()
        ]
    if (invitation := stage.invitations.get(actor.subject)) is not None:
        view["invitation"] = {"at": invitation.at, "invited_by": invitation.invited_by}
    return view


# -- requests ------------------------------------------------------------------------------

Handler = Callable[[Connection, Actor, dict[str, Any]], Awaitable[dict[str, Any]]]


async def _ping(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    return {"pong": True}


async def _invite(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space, target = conn.space, _target(message)
    now = conn.app.clock.wall()
    await space.act(lambda: space.stage.invite(actor, target, now))
    return {"target": target}


async def _mute(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space, target = conn.space, _target(message, actor)
    lock = message.get("lock", False)
    if not isinstance(lock, bool):
        raise BadRequest('"lock" must be true or false')
    member = await space.act(lambda: space.stage.mute(actor, target, lock=lock))
    return {"target": target, "muted": member.muted, "locked": member.locked}


async def _unmute(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space, target = conn.space, _target(message, actor)
    member = await space.act(lambda: space.stage.unmute(actor, target))
    return {"target": target, "muted": member.muted, "locked": member.locked}


async def _to_audience(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space, target = conn.space, _target(message)
    await space.act(lambda: space.stage.move_to_audience(actor, target))
    return {"target": target}


async def _block(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space, target = conn.space, _target(message)
    await space.act(lambda: space.stage.block(actor, target))
    return {"target": target}


async def _promote(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space, target = conn.space, _target(message)
    member = await space.act(lambda: space.stage.promote(actor, target))
    return {"target": target, "role": member.role.value}


async def _demote(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space, target = conn.space, _target(message)
    member = await space.act(lambda: space.stage.demote(actor, target))
    return {"target": target, "role": member.role.value}


async def _leave(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space = conn.space
    await space.act(lambda: space.stage.leave(actor))
    return {}


async def _lower_hand(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space = conn.space
    await space.act(lambda: space.stage.lower_hand(actor))
    return {}


async def _decline(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    space = conn.space
    await space.act(lambda: space.stage.decline(actor))
    return {}


async def _end(conn: Connection, actor: Actor, message: dict[str, Any]) -> dict[str, Any]:
    require(actor, Role.HOST)
    conn.ending = True
    await conn.app.spaces.end(conn.space)
    return {"status": conn.space.status.value}


HANDLERS: dict[str, Handler] = {
    "ping": _ping,
    "invite": _invite,
    "mute": _mute,
    "unmute": _unmute,
    "move_to_audience": _to_audience,
    "block": _block,
    "promote": _promote,
    "demote": _demote,
    "leave": _leave,
    "lower_hand": _lower_hand,
    "decline": _decline,
    "end": _end,
}


# -- the endpoint --------------------------------------------------------------------------


def _admissible(space: Space, actor: Actor) -> None:
    """Listeners get a socket only while the stage concerns them (hand raised, invited)."""
    if actor.role is Role.LISTENER and space.stage.status_of(actor.subject) == "audience":
        raise Conflict("listeners use the control socket only with a raised hand or invitation")


# Open sockets: space id -> subject -> sockets.
Sockets = dict[str, dict[str, set[web.WebSocketResponse]]]
OPEN = web.AppKey("control_open", Sockets)


@routes.get("/api/spaces/{space_id}/control")
async def control(request: web.Request) -> web.StreamResponse:
    app = _app(request)
    space = app.spaces.get(request.match_info["space_id"])
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,), max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30.0
    )
    if not ws.can_prepare(request).ok:
        raise UpgradeRequired("this is a WebSocket endpoint: send an Upgrade: websocket request")
    if space.ended:
        raise Conflict("this space has ended")
    open_sockets = request.app[OPEN].setdefault(space.id, {})
    if sum(len(v) for v in open_sockets.values()) >= MAX_CONNECTIONS_PER_SPACE:
        raise Unavailable("too many control connections to this space", 30)
    token = _header_token(request)
    await ws.prepare(request)
    try:
        claims = await _authenticate(app, ws, token)
        actor = resolve(space.stage, claims, space.id)
        _admissible(space, actor)
    except MajlisError as exc:
        await ws.close(code=close_code(exc), message=exc.message.encode()[:120])
        return ws
    mine = open_sockets.setdefault(actor.subject, set())
    if len(mine) >= MAX_CONNECTIONS_PER_PERSON:
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too many connections of yours")
        return ws
    mine.add(ws)
    try:
        await Connection(app, space, ws, claims).run()
    finally:
        mine.discard(ws)
        if not mine:
            open_sockets.pop(actor.subject, None)
    return ws


async def _authenticate(app: App, ws: web.WebSocketResponse, token: str | None) -> Claims:
    if token is not None:
        return verified(app, token)
    try:
        message = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        raise BadRequest('no token: send {"type": "auth", "token": ...} first') from None
    if message.type is not WSMsgType.TEXT:
        raise BadRequest("the first message must be a JSON auth message")
    parsed = _parse(message.data)
    value = parsed.get("token")
    if parsed["type"] != "auth" or not isinstance(value, str):
        raise BadRequest('the first message must be {"type": "auth", "token": "..."}')
    return verified(app, value)


def setup(web_app: web.Application) -> None:
    """State for the stage's routes (served with majlis.http.api's); sockets close at shutdown."""
    listener_routes.setup(web_app)
    web_app[OPEN] = {}

    async def close_all(_: web.Application) -> None:
        for sockets in list(web_app[OPEN].values()):
            for mine in list(sockets.values()):
                for ws in list(mine):
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    web_app.on_shutdown.append(close_all)
