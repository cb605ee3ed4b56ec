"""Operations endpoints: liveness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from majlis import metrics
from majlis.app import App

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
async def prometheus(request: web.Request) -> web.Response:
    app: App = request.app["majlis"]
    return web.Response(
        text=metrics.render(app.spaces),
        content_type="text/plain",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )
