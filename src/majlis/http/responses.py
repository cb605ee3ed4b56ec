"""Counts HTTP responses by status code for /metrics.

A response-prepare hook rather than a middleware's return value: file responses decide
206, 304 or 416 only while they are being sent, and the hook sees the status actually sent.
"""

from __future__ import annotations

from aiohttp import web

from majlis import metrics


async def count_status(request: web.Request, response: web.StreamResponse) -> None:
    metrics.count_response(response.status)
