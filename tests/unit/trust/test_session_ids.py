from __future__ import annotations

from majlis.trust import session_ids
from majlis.trust.audience import ListenerSessions, LiveSession, Mode

KEY = b"0123456789abcdef" * 4


def test_an_issued_id_is_recognised_with_its_mode_by_anyone_holding_the_key() -> None:
    live = session_ids.issue(KEY, "space1", Mode.LIVE)
    replay = session_ids.issue(KEY, "space1", Mode.REPLAY)
    assert len(live) == session_ids.LENGTH and live.replace("-", "").replace("_", "").isalnum()
    assert session_ids.recognise(KEY, "space1", live) is Mode.LIVE
    assert session_ids.recognise(KEY, "space1", replay) is Mode.REPLAY
    assert live != session_ids.issue(KEY, "space1", Mode.LIVE), "ids are random"


def test_made_up_moved_or_altered_ids_are_not_recognised() -> None:
    sid = session_ids.issue(KEY, "space1", Mode.LIVE)
    assert session_ids.recognise(KEY, "space2", sid) is None, "bound to its space"
    assert session_ids.recognise(b"another key", "space1", sid) is None
    as_replay = sid[:16] + "r" + sid[17:]
    assert session_ids.recognise(KEY, "space1", as_replay) is None, "the mode is signed"
    flipped = sid[:3] + ("A" if sid[3] != "A" else "B") + sid[4:]
    assert session_ids.recognise(KEY, "space1", flipped) is None
    for junk in ("", "no-such-session", sid + "x", sid[:-1], "x" * session_ids.LENGTH):
        assert session_ids.recognise(KEY, "space1", junk) is None, junk


def test_ended_sessions_are_remembered() -> None:
    sessions = ListenerSessions()
    sessions.start("a", LiveSession(Mode.LIVE, "browser", "c1", 100.0))
    assert not sessions.ended("a")
    sessions.end("a")
    assert sessions.ended("a") and sessions.get("a", 101.0) is None
