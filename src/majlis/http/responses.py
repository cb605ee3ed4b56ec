"""Counts HTTP responses by status code for /metrics.

A response-prepare hook rather than a middleware's return value: file responses decide
206, 304 or 416 only while they are being sent, and the hook sees the status actually sent.
"""

from __future__ import annotations

from aiohttp import web

from majlis.metrics import HttpCounters

COUNTERS = web.AppKey("http_counters", HttpCounters)


async def count_status(request: web.Request, response: web.StreamResponse) -> None:
    live = request.path.startswith("/live/")
    kind = live_kind(request.path, "_HLS_msn" in request.query) if live else None
    request.app[COUNTERS].count(response.status, kind)


def live_kind(path: str, blocking: bool) -> str:
    """Which kind of live object a path names (see metrics.LIVE_KINDS)."""
    if path.endswith(".m3u8"):
        return "blocking_playlist" if blocking else "playlist"
    if path.endswith("/init.mp4"):
        return "init"
    if "/p/" in path and path.endswith(".m4s"):
        return "part"
    if "/s/" in path and path.endswith(".m4s"):
        return "segment"
    return "other"
