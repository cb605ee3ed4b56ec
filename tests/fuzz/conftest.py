from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fuzz.client import request
from tests.fuzz.live import Listener, LiveSpace, generous_limits, start_speaker, wait_for_parts
from tests.support.server import majlis_server, stop


def _open_session(base: str, space_id: str) -> str:
    opened = request(base, "POST", f"/live/{space_id}/sessions", b"{}")
    assert opened.status == 201, (opened.status, opened.body)
    return str(opened.json()["session"])


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSpace]:
    """One server for the fuzz suite, with a space that stays live throughout; stopped when
    the suite ends, so it costs the tests after it nothing."""
    with majlis_server(tmp_path_factory.mktemp("fuzz") / "data", *generous_limits()) as server:
        space = server.create_space("Fuzzed while live")
        speaker = start_speaker(server, space)
        try:
            wait_for_parts(server, space["id"])
            session = _open_session(server.base, space["id"])
            listener = Listener(server.base, space["id"], segment_parts=5)
            listener.start()
            try:
                yield LiveSpace(server, space, speaker, listener, session)
            finally:
                listener.stop()
        finally:
            stop(speaker, grace=5)


@pytest.fixture(scope="package")
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
