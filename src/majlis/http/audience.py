"""Listener sessions: the only per-listener URLs, and they carry no media.

A player opens an anonymous session when playback starts, beats every 30 s with the
seconds of audio it actually played, and ends it at pause or page hide (sendBeacon, so
the body may arrive as text/plain). Media URLs stay identical for everyone. Figures and
their definitions: docs/metrics.md.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from majlis.app import App
from majlis.errors import BadRequest, Conflict, NotFound, Unavailable
from majlis.guard.clients import client_address, client_keys, parse_address
from majlis.guard.middleware import LIMITS
from majlis.guard.ratelimit import TokenBuckets, TooManyRequests
from majlis.http.admission import KEY as ADMISSION
from majlis.http.body import read_limited
from majlis.rooms.space import Space
from majlis.storage.events import EventWriter, client_id, events_path, load_salt
from majlis.trust import session_ids
from majlis.trust.audience import (
    HEARTBEAT_S,
    Event,
    LiveSession,
    Mode,
    user_agent_class,
)

routes = web.RouteTableDef()

MAX_BODY_BYTES = 1024
# Past any real listening time, and below 1e308, where a JSON integer stops being a float.
MAX_SECONDS = 1e15
# Open sessions per space; past this (after forgetting expired ones) new ones get 503.
MAX_OPEN_SESSIONS = 100_000
# Heartbeats closer together than this are refused: the player beats every 30 s.
MIN_BEAT_INTERVAL_S = 1.0
# New sessions per address (IPv4) or /64 (IPv6): a burst, then a steady rate.
SESSION_BURST = 30
SESSION_RATE_PER_S = 0.5
MAX_TRACKED_ADDRESSES = 50_000
NO_STORE = {"Cache-Control": "no-store"}


__all__ = ["SessionLimiter", "TooManyRequests", "limiter_key", "routes", "setup"]


def listener_address(request: web.Request) -> str | None:
    limits = request.app[LIMITS]
    ip = client_address(request.remote, request.headers.get("X-Forwarded-For"), limits.trusted)
    return None if ip is None else str(ip)


def limiter_key(address: str | None) -> str:
    """Whose session-rate bucket a request uses: its IPv4 address, or its IPv6 /64 (one
    host commonly holds a whole /64, so counting its addresses one by one limits nothing)."""
    return client_keys(parse_address(address)).address


class SessionLimiter(TokenBuckets):
    """Token buckets per address: SESSION_BURST sessions, refilled SESSION_RATE_PER_S."""

    def __init__(self, burst: float = SESSION_BURST, rate: float = SESSION_RATE_PER_S) -> None:
        super().__init__(burst, rate, MAX_TRACKED_ADDRESSES)


class AudienceService:
    def __init__(self, app: App) -> None:
        self.app = app
        # Nodes of a cluster share one salt, so one listener has one id on all of them.
        self.salt = app.audience_salt or load_salt(app.data)
        self.writer = EventWriter()
        self.limiter = SessionLimiter()

    def record(self, space: Space, kind: str, sid: str, live: LiveSession, played: float) -> None:
        ts = round(self.app.clock.wall(), 3)
        event = Event(ts, kind, sid, live.mode, round(played, 3), live.ua, live.client)
        self.writer.append(events_path(self.app.data, space.id), event)


KEY = web.AppKey("audience", AudienceService)


def setup(web_app: web.Application, app: App) -> None:
    """Register the routes and tie the event writer's lifetime to the application's."""
    service = web_app[KEY] = AudienceService(app)

    async def started(_: web.Application) -> None:
        service.writer.start()

    async def stopped(_: web.Application) -> None:
        await service.writer.close()

    web_app.on_startup.append(started)
    web_app.on_cleanup.append(stopped)
    web_app.add_routes(routes)


async def _body(request: web.Request) -> dict[str, Any]:
    # sendBeacon posts text/plain: any content type is read as JSON.
    raw = await read_limited(request, MAX_BODY_BYTES)
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object")
    return value


def _mode(body: dict[str, Any], default: Mode | None) -> Mode:
    value = body.get("mode")
    if value is None and default is not None:
        return default
    try:
        return Mode(str(value))
    except ValueError:
        raise BadRequest('mode must be "live" or "replay"') from None


def _played(body: dict[str, Any]) -> float:
    value = body.get("played_s", 0)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    # JSON integers have no bound, and isfinite() raises OverflowError past a float's range.
    if not ok or abs(value) >= MAX_SECONDS or not math.isfinite(value) or value < 0:
        raise BadRequest("played_s must be a number of seconds >= 0")
    return float(value)


def _context(request: web.Request) -> tuple[AudienceService, Space]:
    service = request.app[KEY]
    return service, service.app.spaces.get(request.match_info["space_id"])


@routes.post("/live/{space_id}/sessions")
async def start_session(request: web.Request) -> web.Response:
    service, space = _context(request)
    body = await _body(request)
    mode = _mode(body, Mode.LIVE)
    now = service.app.clock.wall()
    admission = request.app[ADMISSION]
    # Polls from the waiting line are not arrivals: they count neither towards attack mode's
    # threshold nor against the address's session budget (the line paces them).
    ticketed = "ticket" in body
    if not ticketed:
        admission.attack.note_request(now)
    # The listener's own address, also behind a trusted edge (X-Forwarded-For): keyed on
    # the edge, every listener behind it would share one budget and one client id.
    address = listener_address(request)
    key = limiter_key(address)
    if not ticketed and not service.limiter.allow(key, now):
        wait = service.limiter.retry_after(key)
        raise TooManyRequests("too many listener sessions from this address", wait)
    space.listeners.sweep(now)
    if len(space.listeners) >= MAX_OPEN_SESSIONS:
        raise Unavailable("too many open listener sessions in this space", HEARTBEAT_S)
    if (answer := admission.gate(request, space, body, now)) is not None:
        return answer
    sid = session_ids.issue(service.salt, space.id, mode)
    ua = user_agent_class(request.headers.get("User-Agent"))
    live = LiveSession(mode, ua, client_id(address, service.salt), now)
    space.listeners.start(sid, live)
    service.record(space, "session_start", sid, live, 0.0)
    return web.json_response(
        {"session": sid, "heartbeat_s": HEARTBEAT_S}, status=201, headers=NO_STORE
    )


def _open(service: AudienceService, request: web.Request, space: Space, sid: str) -> LiveSession:
    now = service.app.clock.wall()
    live = space.listeners.get(sid, now)
    if live is not None:
        return live
    mode = None
    if not space.listeners.ended(sid):
        mode = session_ids.recognise(service.salt, space.id, sid)
    if mode is None:
        raise NotFound("no such listener session (unknown, or ended): start a new one")
    # Issued for this space by this server or another node of its cluster, and unknown here:
    # the space moved to this node, or this node restarted. The playback goes on under the
    # same id, so the listener is not counted twice; it may report one interval of playing.
    space.listeners.sweep(now)
    if len(space.listeners) >= MAX_OPEN_SESSIONS:
        raise Unavailable("too many open listener sessions in this space", HEARTBEAT_S)
    ua = user_agent_class(request.headers.get("User-Agent"))
    client = client_id(listener_address(request), service.salt)
    live = LiveSession(mode, ua, client, now - HEARTBEAT_S)
    space.listeners.start(sid, live)
    return live


@routes.post("/live/{space_id}/sessions/{session}/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    service, space = _context(request)
    body = await _body(request)
    now = service.app.clock.wall()
    sid = request.match_info["session"]
    live = _open(service, request, space, sid)
    if _mode(body, live.mode) is not live.mode:
        raise Conflict("a session keeps the mode it started with: start a new session")
    played = _played(body)
    ended = body.get("ended", False)
    if not isinstance(ended, bool):
        raise BadRequest("ended must be true or false")
    if not ended and now - live.last_seen < MIN_BEAT_INTERVAL_S:
        raise TooManyRequests("heartbeats come every 30 s, not faster", 1)
    played = space.listeners.beat(sid, played, now)
    if service.app.cluster is not None and not live.counted and live.qualifies():
        # Unique listeners across every node, and across a takeover (docs/metrics.md).
        live.counted = True
        service.app.cluster.count_listener(space.id, live.mode.value, sid)
    if ended:
        space.listeners.end(sid)
    service.record(space, "session_end" if ended else "heartbeat", sid, live, played)
    return web.Response(status=204, headers=NO_STORE)


@routes.delete("/live/{space_id}/sessions/{session}")
async def end_session(request: web.Request) -> web.Response:
    service, space = _context(request)
    sid = request.match_info["session"]
    live = _open(service, request, space, sid)
    space.listeners.end(sid)
    service.record(space, "session_end", sid, live, 0.0)
    return web.Response(status=204, headers=NO_STORE)
