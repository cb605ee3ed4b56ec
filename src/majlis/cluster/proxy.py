"""Forwarding a request for a space to the node that owns it, WebSockets included.

Listeners and speakers may reach any node (through edges, a load balancer or DNS); the
node that runs the space answers, and this one relays. The client's address travels in
X-Forwarded-For, which the owner believes when this node is among its trusted proxies.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import ClientError, ClientSession, ClientTimeout, WSMsgType, web

from majlis.cluster.node import Remote
from majlis.errors import Unavailable

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
    )
)  # fmt: skip
# Longer than the longest blocking reload the owner holds (a few parts' worth).
TIMEOUT = ClientTimeout(total=30, connect=2)


def _forwarded_for(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    address = peer[0] if peer else "unknown"
    earlier = request.headers.get("X-Forwarded-For")
    return f"{earlier}, {address}" if earlier else address


def _request_headers(request: web.Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers["X-Forwarded-For"] = _forwarded_for(request)
    return headers


async def forward(request: web.Request, remote: Remote, session: ClientSession) -> web.Response:
    body = await request.read() if request.can_read_body else None
    try:
        async with session.request(
            request.method,
            remote.url.rstrip("/") + request.raw_path,
            headers=_request_headers(request),
            data=body,
            allow_redirects=False,
            timeout=TIMEOUT,
        ) as upstream:
            payload = await upstream.read()
            headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    except (ClientError, TimeoutError, OSError) as exc:
        raise OwnerGone(remote, str(exc) or type(exc).__name__) from None
    headers["X-Majlis-Node"] = remote.node
    return web.Response(status=upstream.status, body=payload, headers=headers)


class OwnerGone(Unavailable):
    def __init__(self, remote: Remote, detail: str) -> None:
        super().__init__(f"the node that runs this space did not answer ({detail})", 1)
        self.remote = remote


async def forward_websocket(
    request: web.Request, remote: Remote, session: ClientSession
) -> web.WebSocketResponse:
    """Open the same socket on the owner, then relay frames both ways until either side
    closes; the owner's close code and reason reach the client."""
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p]
    headers = {
        k: v
        for k, v in request.headers.items()
        if k.lower() in ("authorization", "origin", "user-agent", "accept-language")
    }
    headers["X-Forwarded-For"] = _forwarded_for(request)
    try:
        upstream = await session.ws_connect(
            remote.url.rstrip("/") + request.raw_path,
            protocols=offered,
            headers=headers,
        )
    except (ClientError, TimeoutError, OSError) as exc:
        raise OwnerGone(remote, str(exc) or type(exc).__name__) from None
    client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else [])
    await client.prepare(request)

    async def to_owner() -> None:
        async for msg in client:
            if msg.type == WSMsgType.TEXT:
                await upstream.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await upstream.send_bytes(msg.data)
        await upstream.close(code=client.close_code or 1000)

    async def to_client() -> None:
        while True:
            msg = await upstream.receive()
            if msg.type == WSMsgType.TEXT:
                await client.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await client.send_bytes(msg.data)
            else:  # closed by the owner (or the link to it broke)
                reason = msg.extra if msg.type == WSMsgType.CLOSE and msg.extra else ""
                await client.close(code=upstream.close_code or 1011, message=reason.encode())
                return

    tasks = [asyncio.create_task(to_owner()), asyncio.create_task(to_client())]
    with contextlib.suppress(Exception):
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if not upstream.closed:
        await upstream.close()
    if not client.closed:
        await client.close()
    return client
