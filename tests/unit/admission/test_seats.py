"""The seats admission counts: every present session, whatever its user agent."""

from __future__ import annotations

from majlis.trust.audience import PRESENCE_WINDOW_S, ListenerSessions, LiveSession, Mode

NOW = 1_800_000_000.0


def test_present_counts_bots_too_and_forgets_after_the_window() -> None:
    sessions = ListenerSessions()
    sessions.start("browser", LiveSession(Mode.LIVE, "browser", "c1", NOW))
    sessions.start("script", LiveSession(Mode.LIVE, "script", "c2", NOW))
    sessions.start("ended", LiveSession(Mode.REPLAY, "browser", "c3", NOW))
    sessions.end("ended")
    assert sessions.present(NOW + 1) == 2
    assert sessions.concurrent(NOW + 1) == 1  # the audience figure leaves the script out
    sessions.beat("browser", 30, NOW + 60)
    assert sessions.present(NOW + PRESENCE_WINDOW_S) == 1
    assert sessions.present(NOW + 60 + PRESENCE_WINDOW_S) == 0
