"""Assembles the aiohttp application and runs it until a signal, then shuts down cleanly."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal

from aiohttp import web

from majlis.app import App
from majlis.guard import middleware as guard
from majlis.guard.limits import Limits
from majlis.guard.protocol import GuardedSite
from majlis.http import admission, api, audience, cluster, live, ops, pages, responses, trust, whip
from majlis.http.control import setup as setup_stage
from majlis.http.errors import Handler, error_middleware
from majlis.metrics import HttpCounters

log = logging.getLogger(__name__)

# Bodies beyond this are refused before any handler runs; routes set tighter limits.
MAX_BODY_BYTES = 256 * 1024
SHUTDOWN_GRACE_S = 5.0


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS" and request.path.startswith("/api/"):
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    else:
        response = await handler(request)
    response.headers.setdefault("Access-Control-Allow-Origin", "*")
    return response


def build(app: App) -> web.Application:
    web_app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[cors_middleware, error_middleware]
    )
    web_app["majlis"] = app
    guard.setup(web_app, Limits.from_settings(app.settings), app.clock)
    for table in (api.routes, whip.routes, live.routes, pages.routes, trust.routes):
        web_app.add_routes(table)
    ops.setup(web_app)
    pages.add_static(web_app)
    audience.setup(web_app, app)
    admission.setup(web_app, app)
    setup_stage(web_app)  # the stage: listeners' routes and the participants' control socket
    cluster.setup(web_app, app)  # last: limits are applied by the node the client reached
    web_app[responses.COUNTERS] = HttpCounters()
    web_app.on_response_prepare.append(responses.count_status)
    return web_app


def _raise_open_file_limit(wanted: int) -> None:
    """Every connection is a file descriptor: lift the soft limit towards the connection caps
    (Debian's default soft limit of 1024 would refuse connections long before them)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def serve(app: App, ready: asyncio.Event | None = None) -> None:
    await app.start()
    web_app = build(app)
    limits = web_app[guard.LIMITS]
    # Connections, plus files for recordings, the database and the speakers' sockets.
    _raise_open_file_limit(limits.connections.listener_total + limits.connections.reserve + 1024)
    runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    site = GuardedSite(runner, app.settings.host, app.settings.port, limits, backlog=1024)
    await site.start()
    port = runner.addresses[0][1] if runner.addresses else app.settings.port
    await app.join_cluster(f"http://{app.settings.host}:{port}")
    print(f"Majlis listening on http://{app.settings.host}:{port}", flush=True)
    print(f"Admin token: {app.admin_token}", flush=True)
    print(f"Data folder: {app.data}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("shutting down: closing speakers, finishing segments")
    limits.stopping = True
    # Stop accepting first, then finish the media, then close what is left.
    await site.stop()
    await app.stop()
    await runner.cleanup()
