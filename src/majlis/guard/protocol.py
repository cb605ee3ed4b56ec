"""The HTTP connection with its limits applied: slots, slow-client deadlines, and parse
errors answered with the same short JSON body as every other refusal.

aiohttp reads a request head without any deadline of its own and answers a head that is
too large with a plain-text 400 (logging a traceback); this request handler fixes both.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from majlis.guard.clients import client_keys, is_trusted, parse_address
from majlis.guard.connections import Slot
from majlis.guard.limits import Limits
from majlis.guard.timeouts import RequestTimeout, body_too_slow

log = logging.getLogger(__name__)

# How often a body in flight is checked against the minimum rate.
BODY_CHECK_S = 0.5


def error_body(status: int, code: str, detail: str) -> bytes:
    return json.dumps({"error": code, "status": status, "detail": detail}).encode()


def raw_response(status: int, reason: str, code: str, detail: str, retry_after: int = 0) -> bytes:
    """A whole response for a connection that has no request to answer (yet)."""
    body = error_body(status, code, detail)
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    if retry_after:
        head += f"Retry-After: {retry_after}\r\n"
    return head.encode() + b"\r\n" + body


def describe_parse_error(
    exc: BaseException | None, max_url: int, max_field: int
) -> tuple[int, str, str]:
    """Status, code and detail for a request aiohttp could not parse."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        # The C parser reports the request target as a bytearray and header lines as bytes;
        # the limits tell them apart too when they differ.
        if limit == max_url != max_field:
            is_url = True
        elif limit == max_field != max_url:
            is_url = False
        else:
            is_url = isinstance(exc.args[0], bytearray)
        if is_url:
            return 414, "uri_too_long", f"the request target is longer than {max_url} bytes"
        return 431, "headers_too_large", f"a header line is longer than {max_field} bytes"
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc.message):
        return 431, "headers_too_large", "the request has too many header lines"
    if isinstance(exc, BadHttpMessage):
        detail = str(exc.message)[:200] or "malformed HTTP request"
        return 400, "bad_request", f"malformed HTTP request: {detail}"
    return 500, "internal", "internal server error"


class GuardedRequestHandler(RequestHandler):
    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop, limits: Limits,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(
            manager,
            loop=loop,
            keepalive_timeout=limits.timeouts.idle_s,
            max_line_size=limits.sizes.max_url_bytes,
            max_field_size=limits.sizes.max_header_bytes,
            max_headers=limits.sizes.max_headers,
            **kwargs,
        )
        self.limits = limits
        self.slot: Slot | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_begun = False  # a byte of the awaited head has arrived
        self._body: StreamReader | None = None
        self._body_started = 0.0
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connection slots -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        ip = parse_address(peer[0] if isinstance(peer, tuple) and peer else None)
        exempt = is_trusted(ip, self.limits.trusted) or is_trusted(ip, self.limits.exempt)
        self.slot = self.limits.connections.admit(client_keys(ip).address, exempt)
        if self.slot is None:
            self.limits.refuse("connections_full")
            self._close_with(
                raw_response(
                    503,
                    "Service Unavailable",
                    "unavailable",
                    "the server is at its connection limit: retry shortly",
                    retry_after=1,
                )
            )
            return
        self._start_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.slot is not None:
            self.limits.connections.release(self.slot)
            self.slot = None
        self._cancel_timers()
        super().connection_lost(exc)

    def _close_with(self, response: bytes) -> None:
        if self.transport is not None:
            self.transport.write(response)
        self.force_close()

    # -- the request head -----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:
            return
        if self._body is not None and self._body.is_eof():
            self._body = None
        idle = not (self._request_in_progress or self._messages or self._body is not None)
        if idle and data and self._head_timer is None:
            self._start_head_timer()  # the first byte of a keep-alive connection's next head
        if data and self._head_timer is not None:
            self._head_begun = True
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._stop_head_timer()
            if self._messages:
                self._watch_body(self._messages[-1][1])

    def _start_head_timer(self) -> None:
        self._head_begun = False
        self._head_timer = self._loop.call_later(self.limits.timeouts.head_s, self._head_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_in_progress or self._messages:
            return
        self.limits.refuse("head_timeout")
        if not self._head_begun:
            # Nothing was asked: close quietly. A client that picks this connection from its
            # idle pool just as it closes retries on a new one; a 408 it might read instead.
            self.force_close()
            return
        seconds = self.limits.timeouts.head_s
        self._close_with(
            raw_response(
                408,
                "Request Timeout",
                "request_timeout",
                f"the request head did not arrive within {seconds:g} s",
            )
        )

    # -- the request body -----------------------------------------------------------------

    def _watch_body(self, payload: object) -> None:
        if not isinstance(payload, StreamReader) or payload.is_eof():
            return
        if self._body_timer is not None:
            self._body_timer.cancel()  # a pipelined request's body: watch the newest
        self._body = payload
        self._body_started = self._loop.time()
        self._body_timer = self._loop.call_later(BODY_CHECK_S, self._check_body)

    def _check_body(self) -> None:
        self._body_timer = None
        body = self._body
        if body is None or body.is_eof() or body.exception() is not None:
            self._body = None
            return
        elapsed = self._loop.time() - self._body_started
        # Reading paused means the server is not consuming: the client is not the slow one.
        if self._reading_paused or not body_too_slow(
            body.total_bytes, elapsed, self.limits.timeouts
        ):
            self._body_timer = self._loop.call_later(BODY_CHECK_S, self._check_body)
            return
        self._body = None
        self.limits.refuse("body_too_slow")
        rate = self.limits.timeouts.min_body_rate
        if not self._request_in_progress:
            self.force_close()  # nobody reads it: queued or lingering after a response
            return
        # The handler reading the body gets a 408 it turns into a JSON answer; no lingering
        # for the rest of a body that comes this slowly.
        self._lingering_time = 0.0
        body.set_exception(
            RequestTimeout(f"the request body arrived slower than {rate:g} bytes per second")
        )

    def _cancel_timers(self) -> None:
        self._stop_head_timer()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._body = None

    # -- errors -----------------------------------------------------------------------------

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 500 or exc is None or not isinstance(exc, BadHttpMessage):
            # Not a parse error: keep aiohttp's logging, answer with the JSON body.
            if status >= 500:
                self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
            code = "internal" if status == 500 else "timeout" if status == 504 else "http_error"
            detail = "internal server error" if status == 500 else message or code
        else:
            status, code, detail = describe_parse_error(
                exc, self.max_line_size, self.max_field_size
            )
            # A client's malformed request is not the server's error: no traceback.
            self.limits.refuse(code)
            log.debug("refused a malformed request from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already being sent; cannot send an error")
        response = web.Response(
            status=status, body=error_body(status, code, detail), content_type="application/json"
        )
        response.force_close()
        return response


class GuardedSite(web.TCPSite):
    """A TCP site whose connections are GuardedRequestHandlers."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, limits: Limits,
                 backlog: int = 1024) -> None:  # fmt: skip
        super().__init__(runner, host, port, backlog=backlog)
        self.limits = limits

    async def start(self) -> None:
        await web.BaseSite.start(self)
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert isinstance(server, web.Server)

        def factory() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, loop=loop, limits=self.limits, access_log=None)

        self._server = await loop.create_server(
            factory, self._host, self._port, backlog=self._backlog
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
