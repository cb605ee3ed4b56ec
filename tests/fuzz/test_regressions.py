"""Every input that once crashed a parser (a 500 and a traceback), kept as an explicit case.

The inputs live in corpus/crashes/; each case names where it was sent, the refusal expected
now, and the words of its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from majlis.errors import BadRequest
from majlis.ingest.sdp import check_offer
from tests.fuzz.client import request
from tests.fuzz.corpus import HERE
from tests.fuzz.live import LiveSpace

CRASHES = HERE / "crashes"


@dataclass(frozen=True)
class Crash:
    file: str
    path: str  # {live} and {replay} are space ids, {session} a listener session of {live}
    content_type: str
    auth: str | None  # "admin" or "speaker" (of the live space)
    detail: str  # part of the refusal's message

    def body(self) -> bytes:
        return (CRASHES / self.file).read_bytes()


CASES = [
    # aiortc's createAnswer raised ValueError("None is not in list"): 500.
    Crash(
        "whip-no-direction.sdp",
        "/whip/{live}",
        "application/sdp",
        "speaker",
        "media section has no direction attribute",
    ),
    # OBS's offer without its m=video line: BUNDLE "0 1" but one section, whose mid is 1.
    # aiortc left the section without a transport: 500, then AttributeError in close().
    Crash(
        "whip-bundle-missing-mid.sdp",
        "/whip/{live}",
        "application/sdp",
        "speaker",
        "BUNDLE names mid '0', which no media section has",
    ),
    # Not a crash: aiortc's parser asserted on the c= line and the 400 said nothing.
    Crash(
        "whip-bad-connection-line.sdp",
        "/whip/{live}",
        "application/sdp",
        "speaker",
        "is not a valid c= line",
    ),
    # Not a crash: U+2028 hid a second m= section from check_offer, but not from aiortc.
    Crash(
        "whip-line-separator.sdp",
        "/whip/{live}",
        "application/sdp",
        "speaker",
        "line break other than CRLF or LF",
    ),
    # json.loads raised RecursionError: 500.
    Crash("space-nested-5000.json", "/api/spaces", "application/json", "admin", "nested too"),
    Crash("session-open-1000.json", "/live/{live}/sessions", "text/plain", None, "not valid JSON"),
    # math.isfinite(10**400) raised OverflowError: 500.
    Crash(
        "beat-played-1e400.json",
        "/live/{live}/sessions/{session}/heartbeat",
        "text/plain",
        None,
        "played_s must be a number",
    ),
    # float(10**400) raised OverflowError: 500.
    Crash(
        "clip-to-1e400.json",
        "/api/spaces/{replay}/clips",
        "application/json",
        None,
        "'to' is required and must be a number",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_crash_is_now_a_400(live: LiveSpace, replay: dict[str, Any], case: Crash) -> None:
    session = live.open_session() if "{session}" in case.path else ""
    path = case.path.format(live=live.id, replay=replay["id"], session=session)
    headers = {"Content-Type": case.content_type}
    if case.auth == "admin":
        headers.update(live.admin())
    elif case.auth == "speaker":
        headers["Authorization"] = f"Bearer {live.space['speaker_token']}"
    mark = live.log_mark()
    reply = request(live.base, "POST", path, case.body(), headers)
    live.check(reply, case.file)
    assert reply.status == 400, (reply.status, reply.body)
    assert case.detail in reply.json()["detail"], reply.body
    assert "Traceback" not in "".join(live.server.output[mark:])


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.file.endswith(".sdp")], ids=lambda c: c.file
)
def test_crashing_offers_are_refused_by_check_offer(case: Crash) -> None:
    with pytest.raises(BadRequest, match=case.detail):
        check_offer(case.body(), 64 * 1024)
