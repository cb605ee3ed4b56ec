from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.live import Listener, LiveSpace, start_speaker, wait_for_parts
from tests.support.server import majlis_server, stop


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSpace]:
    """One server for the whole fuzz suite, with a space that stays live throughout."""
    with majlis_server(tmp_path_factory.mktemp("fuzz") / "data") as server:
        space = server.create_space("Fuzzed while live")
        speaker = start_speaker(server, space)
        try:
            wait_for_parts(server, space["id"])
            listener = Listener(server.base, space["id"], segment_parts=5)
            listener.start()
            try:
                yield LiveSpace(server, space, speaker, listener)
            finally:
                listener.stop()
        finally:
            stop(speaker, grace=5)
