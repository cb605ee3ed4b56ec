"""Requests for a space that runs on another node are relayed to it (docs/scale.md)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from aiohttp import ClientSession, TCPConnector, web

from majlis.app import App
from majlis.cluster.proxy import OwnerGone, forward, forward_websocket
from majlis.guard.middleware import LIMITS
from majlis.http.errors import Handler

# Every route that names a space (a clip's id starts with its space's); the id's shape is
# checked again by the handlers.
SPACE_PATH = re.compile(
    r"^/(?:(?:api/spaces|whip|live|s)/([A-Za-z0-9_-]{1,32})(?:/|$)|clips/([A-Za-z0-9_-]{1,32})\.)"
)
SESSION = web.AppKey("cluster_session", ClientSession)
# Connections kept to the other nodes: held blocking reloads each take one.
MAX_RELAY_CONNECTIONS = 2048


def setup(web_app: web.Application, app: App) -> None:
    if app.cluster is None:
        return
    web_app.middlewares.append(cluster_middleware)
    web_app.cleanup_ctx.append(_session)
    limits = web_app[LIMITS]
    limits.share(app.settings)
    assert limits.shared is not None
    app.cluster.budgets = limits.shared


async def _session(web_app: web.Application) -> AsyncIterator[None]:
    connector = TCPConnector(limit=MAX_RELAY_CONNECTIONS, limit_per_host=0)
    web_app[SESSION] = ClientSession(connector=connector, auto_decompress=False)
    yield
    await web_app[SESSION].close()


@web.middleware
async def cluster_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    app: App = request.app["majlis"]
    found = SPACE_PATH.match(request.path)
    if found is None or request.method == "OPTIONS" or app.cluster is None:
        return await handler(request)
    space_id = found.group(1) or found.group(2)
    remote = await app.cluster.route(space_id)
    if remote is None:
        return await handler(request)
    session = request.app[SESSION]
    try:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await forward_websocket(request, remote, session)
        return await forward(request, remote, session)
    except OwnerGone:
        app.cluster.forget(space_id)
        raise
