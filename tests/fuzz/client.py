"""Blocking HTTP for hypothesis tests: every status comes back as a value, never raised."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tests.support.server import RunningServer

ERROR_KEYS = {"error", "status", "detail"}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> Reply:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Reply(
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            data,
            time.perf_counter() - started,
        )
    finally:
        conn.close()


def assert_error_body(reply: Reply) -> None:
    """A rejection is a short JSON object naming the error, the status and what was wrong."""
    assert reply.headers.get("content-type", "").startswith("application/json"), reply
    body = reply.json()
    # Two refusals add documented fields: /readyz its reasons, a proof-of-work its challenge.
    extra = {"not_ready", "pow_required"}
    assert isinstance(body, dict) and set(body) >= ERROR_KEYS, body
    assert set(body) == ERROR_KEYS or body["error"] in extra, body
    assert body["status"] == reply.status, body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str), body
    assert "Traceback" not in body["detail"], body


def assert_healthy(server: RunningServer) -> None:
    """The process answers /healthz and never logged an unhandled exception."""
    assert server.process.poll() is None, server.log()
    assert request(server.base, "GET", "/healthz").status == 200
    log = server.log()
    assert "unhandled error" not in log and "Traceback" not in log, log
