"""Origin-side counting of live responses by kind: how the edge tests see coalescing."""

from __future__ import annotations

import pytest

from majlis.http.responses import live_kind
from majlis.metrics import LIVE_KINDS


@pytest.mark.parametrize(
    ("path", "blocking", "kind"),
    [
        ("/live/abc/audio.m3u8", False, "playlist"),
        ("/live/abc/index.m3u8", False, "playlist"),
        ("/live/abc/audio.m3u8", True, "blocking_playlist"),
        ("/live/abc/init.mp4", False, "init"),
        ("/live/abc/p/12.3.m4s", False, "part"),
        ("/live/abc/s/12.m4s", False, "segment"),
        ("/live/abc/state.json", False, "other"),
        ("/live/abc/sessions", False, "other"),
    ],
)
def test_live_kind(path: str, blocking: bool, kind: str) -> None:
    assert live_kind(path, blocking) == kind
    assert kind in LIVE_KINDS
