"""Applies the per-request limits: the query's size, the connection's pool, the rate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from majlis.clock import Clock
from majlis.errors import Unavailable
from majlis.guard.clients import Client, client_address, client_keys, is_trusted, parse_address
from majlis.guard.connections import Pool
from majlis.guard.lanes import Lane, edge_fill, lane
from majlis.guard.limits import Limits, UriTooLong
from majlis.guard.ratelimit import TooManyRequests

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LIMITS = web.AppKey("guard", Limits)
CLOCK = web.AppKey("guard_clock", Clock)
# Who the request is counted as (set for every request that reaches a handler).
CLIENT = web.RequestKey("guard_client", Client)
_CLOSE = web.RequestKey("guard_close", bool)


def setup(web_app: web.Application, limits: Limits, clock: Clock) -> None:
    web_app[LIMITS] = limits
    web_app[CLOCK] = clock
    web_app.middlewares.append(guard_middleware)
    web_app.on_response_prepare.append(_close_if_refused)


def client_of(request: web.Request) -> Client:
    """The request's client keys (computed here too if the middleware did not run)."""
    if CLIENT in request:
        return request[CLIENT]
    limits = request.app[LIMITS]
    forwarded = request.headers.get("X-Forwarded-For")
    ip = client_address(request.remote, forwarded, limits.trusted)
    return client_keys(ip, limits.exempt)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    limits = request.app[LIMITS]
    client = request[CLIENT] = client_of(request)
    query = len(request.rel_url.raw_query_string)
    if query > limits.sizes.max_query_bytes:
        limits.refuse("uri_too_long")
        raise UriTooLong(
            f"the query string is {query} bytes; the limit is {limits.sizes.max_query_bytes}"
        )
    kind = lane(request.path)
    if kind is Lane.PROBE:
        return await handler(request)
    slot = getattr(request.protocol, "slot", None)
    if kind is Lane.LISTENER and slot is not None and slot.pool is Pool.RESERVE:
        # This connection holds capacity kept for speakers: answer and give it back.
        limits.refuse("listener_connections_full")
        request[_CLOSE] = True
        raise Unavailable("the server is at its listener connection limit: retry shortly", 1)
    if client.exempt or (kind is Lane.LISTENER and _edge_fill(request, limits)):
        return await handler(request)
    limiter = limits.listener_rate if kind is Lane.LISTENER else limits.api_rate
    wait = limiter.check(client.address, client.prefix, request.app[CLOCK].monotonic())
    if wait:
        limits.refuse(f"{kind.value}_rate")
        raise TooManyRequests(f"too many requests from this address: retry in {wait} s", wait)
    if limits.shared is not None:
        budget = limits.shared[kind.value]
        wait = budget.blocked(client.address, request.app[CLOCK].wall())
        if wait:
            limits.refuse(f"{kind.value}_cluster_rate")
            raise TooManyRequests(
                f"too many requests from this address across the cluster: retry in {wait} s",
                wait,
            )
        budget.note(client.address)
    return await handler(request)


def _edge_fill(request: web.Request, limits: Limits) -> bool:
    """A trusted edge filling its cache asks once for every listener behind it: limiting it
    as the one listener named in X-Forwarded-For would refuse a crowd, and a 429 is not
    cached, so the crowd would then come through one by one. The totals still apply."""
    return edge_fill(request.method, request.path) and is_trusted(
        parse_address(request.remote), limits.trusted
    )


async def _close_if_refused(request: web.Request, response: web.StreamResponse) -> None:
    if request.get(_CLOSE):
        response.force_close()
