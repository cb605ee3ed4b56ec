"""Evidence anyone can fetch: the server's public key and each space's provenance document."""

from __future__ import annotations

from aiohttp import web

from majlis.app import App
from majlis.errors import NotFound
from majlis.trust import provenance

routes = web.RouteTableDef()

CORS = {"Access-Control-Allow-Origin": "*"}
# Updated with every segment, like the live playlist.
LIVE_CACHE = "public, max-age=1"
# Signed once the space has ended; it never changes afterwards.
SEALED_CACHE = "public, max-age=86400"


@routes.get("/.well-known/majlis-signing-key")
async def signing_key(request: web.Request) -> web.Response:
    app: App = request.app["majlis"]
    headers = {**CORS, "Cache-Control": "public, max-age=3600"}
    return web.json_response(app.signing_key.public.describe(), headers=headers)


@routes.get("/live/{space_id}/provenance.json")
async def provenance_document(request: web.Request) -> web.Response:
    app: App = request.app["majlis"]
    space = app.spaces.get(request.match_info["space_id"])
    log = space.provenance
    if log.sealed is not None:
        body, cache = log.sealed, SEALED_CACHE
    elif log.chain is None:
        raise NotFound("this space has not started yet: nothing was recorded")
    else:
        facts = provenance.SpaceFacts(space.id, space.title, space.started_at, space.ended_at)
        document = provenance.build(facts, log.chain, ended=False, key_id=app.signing_key.key_id)
        body, cache = provenance.to_json(document), LIVE_CACHE
    return web.Response(
        body=body, content_type="application/json", headers={**CORS, "Cache-Control": cache}
    )
