"""Audience figures against hand-computed expectations (definitions: docs/metrics.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from majlis.http.audience import SessionLimiter, limiter_key
from majlis.storage.events import (
    EventWriter,
    address_prefix,
    client_id,
    export_events,
    read_events,
)
from majlis.trust.audience import (
    PRESENCE_WINDOW_S,
    Event,
    HyperLogLog,
    ListenerSessions,
    LiveSession,
    Mode,
    UniqueCounter,
    compute,
    concurrent_listeners,
    filter_reason,
    format_report,
    sessions_from,
    user_agent_class,
)

T0 = 1_800_000_000.0
LIVE, REPLAY = Mode.LIVE, Mode.REPLAY


def ev(
    t: float, kind: str, sid: str, played: float = 0.0, mode: Mode = LIVE, ua: str = "browser"
) -> Event:
    return Event(T0 + t, kind, sid, mode, played, ua, "c0ffee0000000000")


def scenario() -> list[Event]:
    """Four real listeners, two bots by user agent, a burst of ten 1-second sessions, one
    session just under the minimum and one exactly at it."""
    events = [
        # A: live, plays 70 s, ends at t=70.
        ev(0, "session_start", "A"),
        ev(30, "heartbeat", "A", 30),
        ev(60, "heartbeat", "A", 30),
        ev(70, "session_end", "A", 10),
        # B: live, plays 60 s, its tab closes without an end: present until 70 + 75 = 145.
        ev(10, "session_start", "B"),
        ev(40, "heartbeat", "B", 30),
        ev(70, "heartbeat", "B", 30),
        # C: replay, 35 s, ends at 55.
        ev(20, "session_start", "C", mode=REPLAY),
        ev(50, "heartbeat", "C", 30, mode=REPLAY),
        ev(55, "session_end", "C", 5, mode=REPLAY),
        # Bots: curl and a headless browser, both "playing" long enough.
        ev(0, "session_start", "D", ua="curl"),
        ev(30, "heartbeat", "D", 30, ua="curl"),
        ev(60, "heartbeat", "D", 30, ua="curl"),
        ev(5, "session_start", "E", ua="headless"),
        ev(35, "heartbeat", "E", 30, ua="headless"),
        # G: 4.9 s in all, under the 5 s minimum.
        ev(200, "session_start", "G"),
        ev(230, "heartbeat", "G", 4.9),
        ev(231, "session_end", "G", 0),
        # H: replay, exactly 5 s: counts (the rule is "less than 5 s").
        ev(300, "session_start", "H", mode=REPLAY),
        ev(330, "heartbeat", "H", 5.0, mode=REPLAY),
    ]
    # A burst of very short sessions: ten 1-second plays starting 0.1 s apart.
    for i in range(10):
        events.append(ev(100 + i / 10, "session_start", f"F{i}"))
        events.append(ev(101 + i / 10, "session_end", f"F{i}", 1.0))
    return events


def test_figures_match_hand_computed_expectations() -> None:
    report = compute(scenario())
    assert report.events == 40
    assert report.sessions == 17  # A B C D E G H and F0-F9
    assert report.filtered == {"user_agent": 2, "min_listen": 11}
    assert report.counted == 4
    # Presence (window 75 s): A [0,70), B [10,145), C [20,55), H [300,405).
    assert report.all.unique_listeners == 4
    assert report.all.unique_method == "exact"
    assert report.all.listening_minutes == round(170 / 60, 3)  # 70 + 60 + 35 + 5 s
    assert (report.all.peak_concurrent, report.all.peak_at) == (3, T0 + 20)
    assert report.live.unique_listeners == 2
    assert report.live.listening_minutes == round(130 / 60, 3)
    assert (report.live.peak_concurrent, report.live.peak_at) == (2, T0 + 10)
    assert report.replay.unique_listeners == 2
    assert report.replay.listening_minutes == round(40 / 60, 3)
    assert (report.replay.peak_concurrent, report.replay.peak_at) == (1, T0 + 20)


def test_without_the_user_agent_rule_the_bots_would_raise_the_peak() -> None:
    """D and E, seen as browsers, are present with A, B and C at t=20: peak 5, not 3."""
    disguised = [replace(e, ua="browser") if e.session in "DE" else e for e in scenario()]
    report = compute(disguised)
    assert report.filtered["user_agent"] == 0
    assert (report.all.peak_concurrent, report.all.peak_at) == (5, T0 + 20)
    assert report.all.listening_minutes == round((170 + 60 + 30) / 60, 3)


@pytest.mark.parametrize(
    ("t", "expected"),
    [(-0.001, 0), (0, 1), (20, 3), (55, 2), (60, 2), (70, 1), (144.999, 1), (145, 0), (300, 1)],
)
def test_concurrent_listeners_at_t(t: float, expected: int) -> None:
    sessions = sessions_from(scenario())
    counted = [s for s in sessions.values() if filter_reason(s) is None]
    assert concurrent_listeners(counted, T0 + t) == expected


def test_a_session_is_present_for_the_window_after_each_beat() -> None:
    events = [ev(0, "session_start", "X"), ev(30, "heartbeat", "X", 30)]
    [rec] = sessions_from(events).values()
    assert rec.presence(PRESENCE_WINDOW_S) == [(T0, T0 + 30 + PRESENCE_WINDOW_S)]
    assert PRESENCE_WINDOW_S == 75


def test_the_burst_of_short_sessions_does_not_raise_the_peak() -> None:
    burst = [e for e in scenario() if e.session.startswith("F")]
    report = compute(burst)
    assert report.filtered["min_listen"] == 10
    assert report.all.unique_listeners == 0
    assert report.all.peak_concurrent == 0 and report.all.peak_at is None


@pytest.mark.parametrize(
    ("ua", "cls"),
    [
        ("curl/8.5.0", "curl"),
        ("Wget/1.21", "wget"),
        ("python-requests/2.32", "script"),
        ("Python/3.11 aiohttp/3.14.0", "script"),
        ("Googlebot/2.1 (+http://www.google.com/bot.html)", "crawler"),
        ("Mozilla/5.0 (compatible; bingbot/2.0)", "crawler"),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0 Safari/537.36", "headless"),
        ("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36", "browser"),
        ("AppleCoreMedia/1.0.0.21", "player"),
        ("Lavf/61.1.100", "player"),
        ("", "none"),
        (None, "none"),
        ("SomethingElse/1", "other"),
    ],
)
def test_user_agent_classes(ua: str | None, cls: str) -> None:
    assert user_agent_class(ua) == cls


def test_hyperloglog_stays_within_three_standard_errors() -> None:
    hll = HyperLogLog()
    n = 200_000
    for i in range(n):
        hll.add(f"session-{i}")
    assert abs(HyperLogLog.STANDARD_ERROR - 0.0081) < 0.0001
    assert abs(hll.estimate() - n) / n < 3 * HyperLogLog.STANDARD_ERROR
    # Adding the same ids again changes nothing: it counts distinct ids.
    before = hll.estimate()
    for i in range(1000):
        hll.add(f"session-{i}")
    assert hll.estimate() == before


def test_small_counts_use_linear_counting_and_are_near_exact() -> None:
    hll = HyperLogLog()
    for i in range(500):
        hll.add(str(i))
    assert abs(hll.estimate() - 500) <= 5


def test_unique_counter_is_exact_up_to_its_limit_then_says_hyperloglog() -> None:
    counter = UniqueCounter(limit=1000)
    for i in range(1000):
        counter.add(f"s{i}")
        counter.add(f"s{i}")
    assert (counter.count(), counter.method) == (1000, "exact")
    for i in range(1000, 5000):
        counter.add(f"s{i}")
    assert counter.method == "hyperloglog"
    assert abs(counter.count() - 5000) / 5000 < 3 * HyperLogLog.STANDARD_ERROR


def test_report_states_which_unique_method_was_used() -> None:
    events = [e for i in range(300) for e in (
        ev(i, "session_start", f"s{i}"), ev(i + 30, "heartbeat", f"s{i}", 30))]  # fmt: skip
    exact = compute(events)
    estimated = compute(events, exact_limit=100)
    assert exact.all.unique_method == "exact" and exact.all.unique_listeners == 300
    assert estimated.all.unique_method == "hyperloglog"
    assert abs(estimated.all.unique_listeners - 300) <= 6
    assert "hyperloglog" in format_report(estimated, "x")


def tear(log: Path) -> None:
    with open(log, "a") as f:
        f.write('{"ts": 1800000400.0, "event": "heartb')


async def test_export_and_recompute_give_the_same_numbers(tmp_path: Path) -> None:
    log = tmp_path / "spaces" / "abc" / "events.jsonl"
    log.parent.mkdir(parents=True)
    writer = EventWriter(flush_interval=0.01)
    writer.start()
    for e in scenario():
        writer.append(log, e)
    await writer.close()
    # A torn last line, as a crash mid-write leaves it, is skipped (and said so).
    tear(log)
    events, bad = read_events(log)
    assert (len(events), bad) == (40, 1)
    out = tmp_path / "export.jsonl"
    assert export_events(log, out) == 40
    again, bad_again = read_events(out)
    assert bad_again == 0
    assert compute(again).to_json() == compute(events).to_json() == compute(scenario()).to_json()
    assert format_report(compute(again), "a") == format_report(compute(scenario()), "a")
    line = json.loads(out.read_text().splitlines()[0])
    assert set(line) == {"ts", "event", "session", "mode", "played_s", "ua", "client"}


GOOD = {"ts": 1, "event": "heartbeat", "session": "s", "mode": "live", "played_s": 0,
        "ua": "b", "client": "c"}  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"event": "play"},
        {"mode": "tv"},
        {"played_s": -1},
        {"played_s": float("inf")},
        {"ts": True},
        {"ts": "1"},
        {"session": ""},
        {"client": "x" * 65},
    ],
)
def test_invalid_lines_are_refused(change: dict[str, object]) -> None:
    assert Event.from_json(GOOD).session == "s"
    with pytest.raises(ValueError):
        Event.from_json({**GOOD, **change})
    with pytest.raises(ValueError, match="not a JSON object"):
        Event.from_json([])


def test_addresses_are_truncated_then_hashed_with_the_server_salt() -> None:
    assert address_prefix("203.0.113.77") == "203.0.113.0/24"
    assert address_prefix("::ffff:203.0.113.77") == "203.0.113.0/24"
    assert address_prefix("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_prefix("not an address") == "unknown"
    salt = b"s" * 64
    a = client_id("203.0.113.77", salt)
    assert a == client_id("203.0.113.1", salt)  # the same /24
    assert a != client_id("203.0.114.77", salt)
    assert a != client_id("203.0.113.77", b"t" * 64)  # another server
    assert len(a) == 16 and "203" not in a


def test_live_sessions_clamp_played_time_and_expire() -> None:
    table = ListenerSessions()
    table.start("a", LiveSession(LIVE, "browser", "c", last_seen=T0))
    table.start("bot", LiveSession(LIVE, "curl", "c", last_seen=T0))
    # 30 s after the start at most 30 + 5 s of audio can have played.
    assert table.beat("a", 1000.0, T0 + 30) == 35.0
    assert table.beat("a", 12.5, T0 + 60) == 12.5
    assert table.beat("a", -3, T0 + 70) == 0.0
    assert table.concurrent(T0 + 70) == 1  # the bot is present but not counted
    assert table.get("a", T0 + 70 + PRESENCE_WINDOW_S - 0.001) is not None
    assert table.get("a", T0 + 70 + PRESENCE_WINDOW_S) is None
    assert table.concurrent(T0 + 70 + PRESENCE_WINDOW_S) == 0
    table.sweep(T0 + 70 + PRESENCE_WINDOW_S)
    assert len(table) == 0


def test_session_limiter_allows_a_burst_then_a_steady_rate() -> None:
    limiter = SessionLimiter(burst=3, rate=0.5)
    assert [limiter.allow("k", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.retry_after("k") == 2
    assert limiter.allow("other", 0.0)
    assert not limiter.allow("k", 1.0)
    assert limiter.allow("k", 2.0)


def test_limiter_keys_group_ipv6_by_64() -> None:
    assert limiter_key("203.0.113.7") == "203.0.113.7"
    assert limiter_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert limiter_key("2001:db8::1") == limiter_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert limiter_key(None) == "unknown"
