"""The one mapping from errors to HTTP responses: a short JSON body that says what was wrong."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from majlis.errors import MajlisError, Unavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_AIOHTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    431: "headers_too_large",
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "status": status, "detail": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MajlisError as exc:
        response = error_response(exc.status, exc.code, exc.message)
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _AIOHTTP_CODES.get(exc.status, "http_error")
        response = error_response(exc.status, code, exc.reason or code)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal server error")
