from __future__ import annotations

import pytest

from majlis.guard.lanes import Lane, lane


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
