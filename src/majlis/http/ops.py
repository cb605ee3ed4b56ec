"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from majlis import metrics
from majlis.app import App
from majlis.cluster.link import StoreDown
from majlis.guard import readiness
from majlis.guard.limits import Limits
from majlis.guard.middleware import LIMITS
from majlis.http import admission
from majlis.http.responses import COUNTERS

routes = web.RouteTableDef()

WATCH = web.AppKey("readiness_watch", readiness.TickWatch)
NO_STORE = {"Cache-Control": "no-store"}


def setup(web_app: web.Application) -> None:
    web_app[WATCH] = readiness.TickWatch()
    web_app.add_routes(routes)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    # The process answers: that is all liveness means. Readiness is /readyz.
    return web.json_response({"status": "ok"})


def _lagging(app: App, watch: readiness.TickWatch) -> list[str]:
    now = app.clock.monotonic()
    lagging: list[str] = []
    running = [s for s in app.spaces.all() if s.pipeline.running]
    for space in running:
        stats = space.pipeline.stats
        stalled = watch.stalled(space.id, stats.ticks, now)
        if stalled or stats.lag_s > readiness.MAX_TICK_LAG_S:
            lagging.append(space.id)
    watch.keep_only({s.id for s in running})
    return lagging


async def _store_problem(app: App) -> str | None:
    """A node that cannot reach Redis keeps its live spaces but must not be sent new ones."""
    if app.cluster is None or await app.cluster.link.ping():
        return None
    return f"redis unreachable: {app.cluster.link.last_error}"


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    app: App = request.app["majlis"]
    limits = request.app[LIMITS]
    found = readiness.reasons(
        stopping=limits.stopping,
        listeners_full=limits.connections.listener_full(),
        data_problem=readiness.data_folder_problem(app.data),
        lagging=_lagging(app, request.app[WATCH]),
        store_problem=await _store_problem(app),
    )
    if not found:
        return web.json_response({"status": "ready"}, headers=NO_STORE)
    body = {"error": "not_ready", "status": 503, "detail": "; ".join(found), "reasons": found}
    return web.json_response(body, status=503, headers={**NO_STORE, "Retry-After": "5"})


async def _cluster_metrics(app: App) -> str:
    cluster = app.cluster
    if cluster is None:
        return ""
    uniques = [
        "# HELP majlis_cluster_unique_listeners Distinct listeners of a live space over every "
        "node (HyperLogLog, 0.81 % standard error; docs/metrics.md).",
        "# TYPE majlis_cluster_unique_listeners gauge",
    ]
    try:
        for space_id in sorted(cluster.owned):
            for mode, n in (await cluster.unique_listeners(space_id)).items():
                uniques.append(
                    f'majlis_cluster_unique_listeners{{space="{space_id}",mode="{mode}"}} {n}'
                )
    except StoreDown:
        uniques = []  # unknown while Redis is away: absent rather than wrong
    lines = [
        *uniques,
        "# HELP majlis_cluster_redis_up Whether this node reached Redis at its last call.",
        "# TYPE majlis_cluster_redis_up gauge",
        f"majlis_cluster_redis_up {int(cluster.link.up)}",
        "# HELP majlis_cluster_owned_spaces Spaces whose media pipeline lease this node holds.",
        "# TYPE majlis_cluster_owned_spaces gauge",
        f"majlis_cluster_owned_spaces {len(cluster.owned)}",
        "# HELP majlis_cluster_adopted_total Spaces taken over from a node that stopped.",
        "# TYPE majlis_cluster_adopted_total counter",
        f"majlis_cluster_adopted_total {cluster.adopted}",
        "# HELP majlis_cluster_evicted_total Spaces given up after another node took them.",
        "# TYPE majlis_cluster_evicted_total counter",
        f"majlis_cluster_evicted_total {cluster.evicted}",
        "# HELP majlis_cluster_pushes_fenced_total Changes not written to Redis because"
        " another node had taken their space over.",
        "# TYPE majlis_cluster_pushes_fenced_total counter",
        f"majlis_cluster_pushes_fenced_total {cluster.replicator.fenced}",
        "# HELP majlis_cluster_replication_pending Changes not yet pushed to Redis.",
        "# TYPE majlis_cluster_replication_pending gauge",
        f"majlis_cluster_replication_pending {cluster.replicator.pending}",
    ]
    return "\n".join(lines) + "\n"


def _guard_metrics(limits: Limits) -> str:
    conns = limits.connections
    lines = [
        "# HELP majlis_guard_connections Open HTTP connections by pool.",
        "# TYPE majlis_guard_connections gauge",
        f'majlis_guard_connections{{pool="listener"}} {conns.listeners}',
        f'majlis_guard_connections{{pool="reserve"}} {conns.reserved}',
        "# HELP majlis_guard_held_requests Blocking reloads and preload hints being held.",
        "# TYPE majlis_guard_held_requests gauge",
        f"majlis_guard_held_requests {limits.holds.held}",
        "# HELP majlis_guard_refusals_total Requests and connections refused by a limit.",
        "# TYPE majlis_guard_refusals_total counter",
    ]
    lines += [
        f'majlis_guard_refusals_total{{reason="{reason}"}} {count}'
        for reason, count in sorted(limits.refusals.items())
    ]
    return "\n".join(lines) + "\n"


@routes.get("/metrics")
async def prometheus(request: web.Request) -> web.Response:
    app: App = request.app["majlis"]
    return web.Response(
        text=metrics.render(app.spaces, request.app[COUNTERS])
        + _guard_metrics(request.app[LIMITS])
        + admission.metrics_text(request.app)
        + await _cluster_metrics(app),
        content_type="text/plain",
        charset="utf-8",
        headers=NO_STORE,
    )
