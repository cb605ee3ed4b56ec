"""Who is asking: the admin token or a space's capability token, from `Authorization`."""

from __future__ import annotations

import hmac

from aiohttp import web

from majlis.app import App
from majlis.errors import Forbidden, Unauthorized
from majlis.rooms.tokens import Claims, Role, bearer, require_role


def require_admin(app: App, request: web.Request) -> None:
    token = bearer(request.headers.get("Authorization"))
    # Header bytes that are not UTF-8 arrive as surrogates, which encode() refuses.
    if not token.isascii() or not hmac.compare_digest(token.encode(), app.admin_token.encode()):
        raise Forbidden("this action needs the admin token")


def is_admin(app: App, request: web.Request) -> bool:
    try:
        require_admin(app, request)
    except (Unauthorized, Forbidden):
        return False
    return True


def space_claims(app: App, request: web.Request, space_id: str, *roles: Role) -> Claims:
    claims = app.signer.verify(bearer(request.headers.get("Authorization")), app.clock.wall())
    require_role(claims, space_id, *roles)
    return claims
