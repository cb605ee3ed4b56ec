"""Listener sessions over real HTTP, the `majlis audience` command, and /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from majlis.storage.events import events_path, read_events
from majlis.trust.audience import Event
from tests.support.browser import chromium, make_tone_wav
from tests.support.server import RunningServer, majlis_server
from tests.support.whip import ToneTrack, publish, unpublish

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"}
CURL = {"User-Agent": "curl/8.5.0"}


async def start(
    http: aiohttp.ClientSession, server: RunningServer, space: str, **kw: Any
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    async with http.post(f"{server.base}/live/{space}/sessions", **kw) as resp:
        return resp.status, await resp.json(), resp.headers


async def beat(
    http: aiohttp.ClientSession, server: RunningServer, space: str, session: str, **kw: Any
) -> int:
    url = f"{server.base}/live/{space}/sessions/{session}/heartbeat"
    async with http.post(url, **kw) as resp:
        await resp.read()
        return resp.status


def _ids_after_dashes(args: tuple[str, ...]) -> list[str]:
    """`majlis audience <space>`: a space id may begin with "-", so it goes after "--"."""
    if len(args) >= 2 and args[0] == "audience" and not args[1].startswith("--"):
        return [args[0], *args[2:], "--", args[1]]
    return list(args)


async def majlis(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "majlis.cli", *_ids_after_dashes(args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def audience_json(server: RunningServer, space: str, events: int) -> dict[str, Any]:
    """Poll `majlis audience --json` until the server's writer has flushed ``events``."""
    deadline = time.monotonic() + 10
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        code, out, err = await majlis("audience", space, "--data", str(server.data), "--json")
        assert code == 0, err
        last = json.loads(out)
        if last["events"] >= events:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"only {last.get('events')} of {events} events were written: {last}")


async def test_sessions_heartbeats_limits_and_the_audience_command(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    space = server.create_space("Audience")["id"]
    status, body, headers = await start(http, server, space, json={"mode": "live"}, headers=BROWSER)
    assert status == 201 and body["heartbeat_s"] == 30 and headers["Cache-Control"] == "no-store"
    listener = body["session"]
    status, body, _ = await start(http, server, space, headers=BROWSER, data=b"")
    assert status == 201
    quick = body["session"]
    status, body, _ = await start(http, server, space, json={"mode": "replay"}, headers=CURL)
    bot = body["session"]
    started = time.monotonic()

    # Bad input: each refused with its own status, and none of it reaches the log.
    assert await beat(http, server, space, listener, data=b"{" + b" " * 1100 + b"}") == 413
    assert await beat(http, server, space, listener, data=b"played") == 400
    assert await beat(http, server, space, listener, json=[1]) == 400
    assert await beat(http, server, space, listener, json={"mode": "tv"}) == 400
    assert await beat(http, server, space, listener, json={"played_s": -1}) == 400
    assert await beat(http, server, space, listener, json={"played_s": "5"}) == 400
    assert await beat(http, server, space, listener, json={"ended": "yes"}) == 400
    assert await beat(http, server, space, listener, json={"mode": "replay"}) == 409
    assert await beat(http, server, space, "no-such-session", json={}) == 404
    assert await beat(http, server, "nospace", listener, json={}) == 404
    status, body, _ = await start(http, server, space, json={"mode": "radio"})
    assert status == 400 and body["error"] == "bad_request"
    # Heartbeats faster than one a second are refused.
    assert await beat(http, server, space, listener, json={"played_s": 0.5}) == 429

    await asyncio.sleep(1.2)  # heartbeats need a second between them
    # Claims of more audio than time allows are clamped to the elapsed time + 5 s.
    assert await beat(http, server, space, listener, json={"mode": "live", "played_s": 1e6}) == 204
    elapsed = time.monotonic() - started
    assert await beat(http, server, space, bot, json={"played_s": 6}) == 204
    assert await beat(http, server, space, quick, json={"played_s": 1.5}) == 204
    # The end as navigator.sendBeacon sends it: text/plain.
    final = json.dumps({"mode": "live", "played_s": 0.25, "ended": True})
    plain = {"Content-Type": "text/plain;charset=UTF-8"}
    assert await beat(http, server, space, quick, data=final, headers=plain) == 204
    assert await beat(http, server, space, quick, json={}) == 404
    async with http.delete(f"{server.base}/live/{space}/sessions/{bot}") as resp:
        assert resp.status == 204
    async with http.delete(f"{server.base}/live/{space}/sessions/{bot}") as resp:
        assert resp.status == 404

    # A flood of heartbeats for made-up sessions creates nothing and is logged nowhere.
    fakes = [await beat(http, server, space, f"fake{i}", json={"played_s": 30}) for i in range(50)]
    assert fakes == [404] * 50

    # 3 starts + 3 heartbeats + 2 ends, nothing else.
    report = await audience_json(server, space, 8)
    assert report["events"] == 8
    assert report["sessions"] == 3
    assert report["filtered"] == {"user_agent": 1, "min_listen": 1}
    assert report["counted_sessions"] == 1
    live = report["live"]
    assert live["unique_listeners"] == 1 and live["unique_method"] == "exact"
    assert 5 / 60 < live["listening_minutes"] <= (elapsed + 5.1) / 60
    assert live["peak_concurrent"] == 1
    assert report["replay"]["unique_listeners"] == 0

    export = tmp_path / "events.jsonl"
    code, out, err = await majlis(
        "audience", space, "--data", str(server.data), "--export", str(export), "--json"
    )
    assert code == 0 and "exported 8 events" in err
    assert json.loads(out) == report
    code, again, _ = await majlis("audience", "--from-export", str(export), "--json")
    assert code == 0 and json.loads(again) == report
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert all("127.0.0" not in json.dumps(line) for line in lines), "raw address in the log"

    code, text, _ = await majlis("audience", space, "--data", str(server.data))
    assert code == 0
    for name in ("unique_listeners", "listening_minutes", "peak_concurrent",
                 "filtered.user_agent", "filtered.min_listen", "docs/metrics.md"):  # fmt: skip
        assert name in text, f"{name} missing from:\n{text}"
    code, _, err = await majlis("audience", "nosuchspace", "--data", str(server.data))
    assert code == 2 and "no space" in err and "Traceback" not in err
    code, _, err = await majlis("audience", "--from-export", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "no such export file" in err


async def test_new_sessions_are_rate_limited_per_address(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = server.create_space("Flood")["id"]
    statuses = [(await start(http, server, space, headers=BROWSER))[0] for _ in range(30)]
    assert statuses == [201] * 30
    status, body, headers = await start(http, server, space, headers=BROWSER)
    assert status == 429 and body["error"] == "too_many_requests"
    assert int(headers["Retry-After"]) >= 1


async def test_behind_a_trusted_edge_each_listener_has_its_own_budget(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    # The edge is 127.0.0.1 and says who it forwards; a listener's budget is its own.
    with majlis_server(tmp_path / "data", "--trusted-proxy", "127.0.0.1/32") as edge_origin:
        space = edge_origin.create_space("Behind an edge")["id"]
        one = {**BROWSER, "X-Forwarded-For": "198.51.100.7"}
        other = {**BROWSER, "X-Forwarded-For": "203.0.113.9"}
        statuses = [(await start(http, edge_origin, space, headers=one))[0] for _ in range(31)]
        assert statuses == [201] * 30 + [429]
        assert (await start(http, edge_origin, space, headers=other))[0] == 201


# -- /metrics ---------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse_exposition(text: str) -> tuple[dict[str, str], Samples]:
    """Prometheus text format 0.0.4: every line a HELP, a TYPE or a sample of a declared
    family; returns the families' types and the samples by series name."""
    types: dict[str, str] = {}
    samples: Samples = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in {"counter", "gauge", "histogram"}, line
            assert name not in types, f"{name} declared twice"
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        family = family if types.get(family) == "histogram" else name
        assert family in types, f"{name} has no # TYPE"
        pairs = dict(_LABEL.findall(labels or ""))
        samples.setdefault(name, []).append((pairs, float(value)))
    for name, kind in types.items():
        assert name.startswith(("majlis_", "process_")), name
        assert name.endswith("_total") == (kind == "counter"), f"{name} is a {kind}"
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [
        v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {samples.get(name)}"
    return found[0]


async def scrape(
    http: aiohttp.ClientSession, server: RunningServer
) -> tuple[dict[str, str], Samples]:
    async with http.get(server.base + "/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        return parse_exposition(await resp.text())


async def test_metrics_series_are_present_and_well_formed(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    created = server.create_space("Metrics")
    space = created["id"]
    pub = await publish(http, server.base, created["whip_url"], created["host_token"],
                        ToneTrack(440.0), name="host")  # fmt: skip
    try:
        for headers in (BROWSER, BROWSER, CURL):
            assert (await start(http, server, space, headers=headers))[0] == 201
        # Wait until a segment has been written, so the histogram has an observation.
        deadline = time.monotonic() + 15
        while True:
            types, samples = await scrape(http, server)
            if value(samples, "majlis_segment_write_seconds_count") >= 1:
                break
            assert time.monotonic() < deadline, "no segment written in 15 s"
            await asyncio.sleep(0.2)
        assert types["majlis_listeners"] == "gauge"
        assert value(samples, "majlis_listeners", space=space) == 2  # curl is not a listener
        assert value(samples, "majlis_spaces_live") == 1
        assert value(samples, "majlis_speakers", space=space) == 1
        assert 0 <= value(samples, "majlis_encoder_lag_seconds", space=space) < 1
        assert value(samples, "majlis_http_responses_total", code="201") >= 4
        assert value(samples, "majlis_http_responses_total", code="200") >= 1

        assert types["majlis_segment_write_seconds"] == "histogram"
        buckets = samples["majlis_segment_write_seconds_bucket"]
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "histogram buckets must be cumulative"
        assert buckets[-1][0] == {"le": "+Inf"}
        assert counts[-1] == value(samples, "majlis_segment_write_seconds_count")
        assert 0 < value(samples, "majlis_segment_write_seconds_sum") < counts[-1] * 2.5
        bounds = [float(lab["le"]) for lab, _ in buckets[:-1]]
        assert bounds == sorted(bounds)
        # Bounded labels only: a space (live spaces only), a status code, a bucket, a job,
        # a connection pool, the reason of a refusal, the kind of a /live/ response.
        allowed = {"space", "code", "le", "group", "pool", "reason", "kind"}
        for name, rows in samples.items():
            for labels, _ in rows:
                assert set(labels) <= allowed, (name, labels)
                if "code" in labels:
                    assert re.fullmatch(r"[1-5]\d\d", labels["code"]), labels
    finally:
        await unpublish(http, server.base, pub)

    host = {"Authorization": f"Bearer {created['host_token']}"}
    async with http.post(f"{server.base}/api/spaces/{space}/end", headers=host) as resp:
        assert resp.status == 200
    _, samples = await scrape(http, server)
    assert value(samples, "majlis_spaces_live") == 0
    assert all(lab.get("space") != space for rows in samples.values() for lab, _ in rows), (
        "series of an ended space must go"
    )
    assert value(samples, "majlis_segment_write_seconds_count") >= 1


# -- the page's own session -------------------------------------------------------------


async def logged(log: Path, kind: str, within: float = 15.0) -> list[Event]:
    """Poll the event log until an event of ``kind`` is there; returns every event."""
    deadline = time.monotonic() + within
    events: list[Event] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            events, _ = read_events(log)
            if any(e.kind == kind for e in events):
                return events
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} in the event log after {within} s: {events}")


async def test_the_page_opens_a_session_while_playing_and_ends_it_at_pause(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    created = server.create_space("Page session")
    log = events_path(server.data, created["id"])
    pub = await publish(http, server.base, created["whip_url"], created["host_token"],
                        ToneTrack(440.0), name="host")  # fmt: skip
    try:
        async with chromium(make_tone_wav(tmp_path / "mic.wav")) as browser:
            page = await browser.new_page()
            await page.goto(server.base + created["page_url"])
            await page.click("#play")
            [start] = [e for e in await logged(log, "session_start") if e.kind != "heartbeat"]
            assert start.mode.value == "live"
            assert start.ua == "headless"  # Playwright's Chromium says HeadlessChrome
            began = await page.evaluate("document.getElementById('player').currentTime")
            await page.wait_for_function(
                f"document.getElementById('player').currentTime > {began + 3}", timeout=15_000
            )
            await page.click("#play")  # pause: the page ends its session
            paused_at = time.time()
            events = await logged(log, "session_end")
            [end] = [e for e in events if e.kind == "session_end"]
            assert end.session == start.session
            # What the player played: more than the 3 s waited for, never more than wall time.
            assert 2.5 < end.played_s <= paused_at - start.ts + 0.5, (start, end)
    finally:
        await unpublish(http, server.base, pub)
