from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fuzz.client import request
from tests.fuzz.live import Listener, LiveSpace, start_speaker, wait_for_parts
from tests.support.server import majlis_server, stop

# Rates "per second/burst" far above what the fuzzers send from their one address: the
# examples must reach the parsers, not the rate limiter that guards them.
_LIMITS = {
    f"--{who}{scope}-rate": "100000/100000"
    for who in ("api", "listener")
    for scope in ("", "-prefix")
}


def _generous_limits() -> list[str]:
    """The rate-limit flags this server knows (older builds have none)."""
    cmd = [sys.executable, "-m", "majlis.cli", "serve", "--help"]
    usage = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    return [part for flag, value in _LIMITS.items() if flag in usage for part in (flag, value)]


def _open_session(base: str, space_id: str) -> str:
    opened = request(base, "POST", f"/live/{space_id}/sessions", b"{}")
    assert opened.status == 201, (opened.status, opened.body)
    return str(opened.json()["session"])


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSpace]:
    """One server for the whole fuzz suite, with a space that stays live throughout."""
    with majlis_server(tmp_path_factory.mktemp("fuzz") / "data", *_generous_limits()) as server:
        space = server.create_space("Fuzzed while live")
        speaker = start_speaker(server, space)
        try:
            wait_for_parts(server, space["id"])
            sessions = [_open_session(server.base, space["id"]) for _ in range(2)]
            listener = Listener(server.base, space["id"], segment_parts=5)
            listener.start()
            try:
                yield LiveSpace(server, space, speaker, listener, *sessions)
            finally:
                listener.stop()
        finally:
            stop(speaker, grace=5)


@pytest.fixture(scope="session")
def replay(live: LiveSpace) -> dict[str, Any]:
    """A second space of the same server that had a speaker for two segments, then ended."""
    server = live.server
    space = server.create_space("Ended replay")
    speaker = start_speaker(server, space)
    try:
        wait_for_parts(server, space["id"], segments=2)
    finally:
        stop(speaker, grace=5)
    ended = request(server.base, "POST", f"/api/spaces/{space['id']}/end", headers=live.admin())
    assert ended.status == 200, (ended.status, ended.body)
    return space
