"""Reading request bodies within limits."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from majlis.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


async def read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes; the limit is {limit}")
    # read(n) returns whatever has arrived, up to n bytes: loop to EOF (or past the limit).
    data = bytearray()
    while len(data) <= limit:
        chunk = await request.content.read(limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise PayloadTooLarge(f"body is larger than the limit of {limit} bytes")
    return bytes(data)


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("body must be application/json")
    raw = await read_limited(request, limit)
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        # About a thousand nested arrays fit in a small body and exhaust the parser's stack.
        raise BadRequest("body is not valid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object")
    return value
