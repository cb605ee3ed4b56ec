from __future__ import annotations

import pytest

from majlis.guard.lanes import Lane, edge_fill, lane


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/live/abc/audio.m3u8", Lane.LISTENER),
        ("/live/abc/p/1.2.m4s", Lane.LISTENER),
        ("/live/abc/sessions", Lane.LISTENER),
        ("/live/abc/provenance.json", Lane.LISTENER),
        ("/s/abc", Lane.LISTENER),
        ("/static/space.js", Lane.LISTENER),
        ("/whip/abc", Lane.SPEAKER),
        ("/whip/abc/session", Lane.SPEAKER),
        ("/api/spaces", Lane.SPEAKER),
        ("/metrics", Lane.SPEAKER),
        ("/healthz", Lane.PROBE),
        ("/readyz", Lane.PROBE),
        ("/whipped", Lane.LISTENER),
        ("/apis", Lane.LISTENER),
    ],
)
def test_lanes(path: str, expected: Lane) -> None:
    assert lane(path) is expected


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/live/abc/audio.m3u8", True),
        ("GET", "/live/abc/index.m3u8", True),
        ("HEAD", "/live/abc/init.mp4", True),
        ("GET", "/live/abc/p/12.3.m4s", True),
        ("GET", "/live/abc/p/2/12.3.m4s", True),
        ("GET", "/live/abc/s/12.m4s", True),
        ("GET", "/live/abc/state.json", True),
        ("POST", "/live/abc/sessions", False),
        ("GET", "/live/abc/sessions", False),
        ("GET", "/live/abc/provenance.json", False),
        ("GET", "/s/abc", False),
        ("GET", "/live/abc/../x/audio.m3u8", False),
        ("POST", "/live/abc/audio.m3u8", False),
    ],
)
def test_edge_fills(method: str, path: str, expected: bool) -> None:
    assert edge_fill(method, path) is expected
