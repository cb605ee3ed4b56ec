from __future__ import annotations

import json

from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from majlis.guard.protocol import describe_parse_error, raw_response


def test_a_long_request_target_is_414() -> None:
    exc = LineTooLong(bytearray(b"/live/aaaa..."), 4096)
    assert describe_parse_error(exc, 4096, 8190)[:2] == (414, "uri_too_long")


def test_a_long_header_line_is_431() -> None:
    exc = LineTooLong(b"X-Big: aaaa...", 8190)
    status, code, detail = describe_parse_error(exc, 4096, 8190)
    assert (status, code) == (431, "headers_too_large")
    assert "8190 bytes" in detail


def test_equal_limits_are_told_apart_by_what_was_read() -> None:
    assert describe_parse_error(LineTooLong(bytearray(b"/x"), 100), 100, 100)[0] == 414
    assert describe_parse_error(LineTooLong(b"X-A: b", 100), 100, 100)[0] == 431


def test_too_many_headers_is_431_and_garbage_400() -> None:
    assert describe_parse_error(BadHttpMessage("Too many headers received"), 1, 2)[0] == 431
    status, code, detail = describe_parse_error(BadHttpMessage("Invalid method"), 1, 2)
    assert (status, code) == (400, "bad_request") and "Invalid method" in detail


def test_raw_response_is_a_whole_json_refusal() -> None:
    raw = raw_response(503, "Service Unavailable", "unavailable", "full", retry_after=2)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 2" in head and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"error": "unavailable", "status": 503, "detail": "full"}
