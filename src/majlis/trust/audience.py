"""Audience figures, computed exactly as docs/metrics.md defines them.

Pure and synchronous: the figures come from the events of the append-only log (see
majlis.storage.events), so anyone holding an export recomputes the same numbers. The live
session table the HTTP layer keeps (who is listening now) lives here too, driven by `now`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard

# The player beats every HEARTBEAT_S while playing. A session is present for
# PRESENCE_WINDOW_S after its start or any heartbeat: two beats may be lost (or a
# background tab's timers throttled) before a listener stops counting.
HEARTBEAT_S = 30
PRESENCE_SLACK_S = 15
PRESENCE_WINDOW_S = 2 * HEARTBEAT_S + PRESENCE_SLACK_S
# played_s may exceed the wall time since the previous beat by this much (timer jitter,
# the request's own transit); beyond that it is clamped.
PLAYED_SLACK_S = 5.0
# IAB Podcast Measurement Guidelines' spirit: a play too short to be listening is not
# counted. Sessions with less audio played than this are filtered out.
MIN_LISTEN_S = 5.0
# Distinct session ids are counted exactly up to this many, then by HyperLogLog.
EXACT_UNIQUE_LIMIT = 100_000

EVENT_KINDS = ("session_start", "heartbeat", "session_end")


class Mode(StrEnum):
    LIVE = "live"
    REPLAY = "replay"


# User-agent classes filtered as non-human (docs/metrics.md, rule `user_agent`).
BOT_CLASSES = frozenset({"none", "curl", "wget", "script", "crawler", "headless"})
_SCRIPTS = ("python-requests", "python-urllib", "python/", "aiohttp", "httpx", "go-http-client",
            "java/", "okhttp", "libwww-perl", "node-fetch", "axios")  # fmt: skip
_CRAWLERS = ("bot", "crawler", "spider", "crawl", "slurp", "preview")
_PLAYERS = ("applecoremedia", "vlc", "lavf", "exoplayer", "stagefright")


def user_agent_class(user_agent: str | None) -> str:
    """A coarse class of a User-Agent header; only the class is ever stored."""
    ua = (user_agent or "").strip().lower()
    if not ua:
        return "none"
    if "headless" in ua or "phantomjs" in ua:
        return "headless"
    if ua.startswith("curl/"):
        return "curl"
    if ua.startswith("wget/"):
        return "wget"
    if any(s in ua for s in _SCRIPTS):
        return "script"
    if any(s in ua for s in _CRAWLERS):
        return "crawler"
    if any(s in ua for s in _PLAYERS):
        return "player"
    if ua.startswith("mozilla/"):
        return "browser"
    return "other"


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the event log. ``client`` is a salted hash of the address's prefix."""

    ts: float
    kind: str
    session: str
    mode: Mode
    played_s: float
    ua: str
    client: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "event": self.kind,
            "session": self.session,
            "mode": self.mode.value,
            "played_s": self.played_s,
            "ua": self.ua,
            "client": self.client,
        }

    @classmethod
    def from_json(cls, obj: Any) -> Event:
        """Parse one decoded log line; raises ValueError saying what is wrong."""
        if not isinstance(obj, dict):
            raise ValueError("event is not a JSON object")
        kind = obj.get("event")
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event {kind!r}")
        ts, played = obj.get("ts"), obj.get("played_s")
        if not (_number(ts) and _number(played)) or played < 0:
            raise ValueError("ts and played_s must be numbers, played_s >= 0")
        texts = [obj.get(k) for k in ("session", "ua", "client")]
        if not all(isinstance(t, str) and 0 < len(t) <= 64 for t in texts):
            raise ValueError("session, ua and client must be short strings")
        try:
            mode = Mode(str(obj.get("mode")))
        except ValueError:
            raise ValueError(f"unknown mode {obj.get('mode')!r}") from None
        return cls(float(ts), kind, obj["session"], mode, float(played), obj["ua"], obj["client"])


def _number(value: object) -> TypeGuard[float]:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value)  # type: ignore[arg-type]


class HyperLogLog:
    """HyperLogLog with p = 14: 16,384 registers, standard error 1.04/sqrt(m) = 0.81%."""

    P = 14
    M = 1 << P
    STANDARD_ERROR = 1.04 / math.sqrt(M)

    def __init__(self) -> None:
        self.registers = bytearray(self.M)

    def add(self, item: str) -> None:
        h = int.from_bytes(hashlib.blake2b(item.encode(), digest_size=8).digest(), "big")
        rest = h & ((1 << (64 - self.P)) - 1)
        rank = (64 - self.P) - rest.bit_length() + 1
        index = h >> (64 - self.P)
        if rank > self.registers[index]:
            self.registers[index] = rank

    def estimate(self) -> int:
        m = self.M
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / sum(2.0**-r for r in self.registers)
        zeros = self.registers.count(0)
        if raw <= 2.5 * m and zeros:
            # Small range: linear counting is the better estimator (Flajolet et al. 2007).
            return round(m * math.log(m / zeros))
        return round(raw)


class UniqueCounter:
    """Distinct strings: an exact set up to ``limit``, then HyperLogLog."""

    def __init__(self, limit: int = EXACT_UNIQUE_LIMIT) -> None:
        self.limit = limit
        self._exact: set[str] | None = set()
        self._hll: HyperLogLog | None = None

    def add(self, item: str) -> None:
        if self._exact is not None:
            self._exact.add(item)
            if len(self._exact) <= self.limit:
                return
            self._hll = HyperLogLog()
            for seen in self._exact:
                self._hll.add(seen)
            self._exact = None
        assert self._hll is not None
        self._hll.add(item)

    @property
    def method(self) -> str:
        return "exact" if self._exact is not None else "hyperloglog"

    def count(self) -> int:
        if self._exact is not None:
            return len(self._exact)
        assert self._hll is not None
        return self._hll.estimate()


# -- figures from the event log ---------------------------------------------------------


@dataclass(slots=True)
class SessionRecord:
    """Everything the figures need about one session, gathered from its events."""

    session: str
    mode: Mode
    ua: str
    seen: list[float] = field(default_factory=list)  # session_start and heartbeat times
    ended_at: float | None = None
    played_s: float = 0.0

    def presence(self, window_s: float) -> list[tuple[float, float]]:
        """Half-open intervals [a, b) during which the session counts as concurrent."""
        intervals: list[tuple[float, float]] = []
        for ts in sorted(self.seen):
            end = ts + window_s
            if self.ended_at is not None:
                end = min(end, self.ended_at)
            if end <= ts:
                continue
            if intervals and ts <= intervals[-1][1]:
                intervals[-1] = (intervals[-1][0], max(intervals[-1][1], end))
            else:
                intervals.append((ts, end))
        return intervals


def sessions_from(events: Iterable[Event]) -> dict[str, SessionRecord]:
    """Group events by session; mode and user-agent class come from the first event."""
    sessions: dict[str, SessionRecord] = {}
    for e in events:
        rec = sessions.get(e.session)
        if rec is None:
            rec = sessions[e.session] = SessionRecord(e.session, e.mode, e.ua)
        rec.played_s += e.played_s
        if e.kind == "session_end":
            rec.ended_at = e.ts if rec.ended_at is None else min(rec.ended_at, e.ts)
        else:
            rec.seen.append(e.ts)
    return sessions


def filter_reason(rec: SessionRecord, min_listen_s: float = MIN_LISTEN_S) -> str | None:
    """The first rule of docs/metrics.md that excludes a session, or None if it counts."""
    if rec.ua in BOT_CLASSES:
        return "user_agent"
    if rec.played_s < min_listen_s:
        return "min_listen"
    return None


def concurrent_listeners(
    sessions: Iterable[SessionRecord], t: float, window_s: float = PRESENCE_WINDOW_S
) -> int:
    """Sessions with a start or heartbeat in (t - window, t] and not ended at or before t."""
    return sum(
        1 for rec in sessions if any(a <= t < b for a, b in rec.presence(window_s))
    )  # fmt: skip


def peak_concurrent(
    sessions: Iterable[SessionRecord], window_s: float = PRESENCE_WINDOW_S
) -> tuple[int, float | None]:
    """The largest concurrent count and the earliest time it was reached."""
    edges: list[tuple[float, int]] = []
    for rec in sessions:
        for a, b in rec.presence(window_s):
            edges += [(a, 1), (b, -1)]
    # Intervals are half-open: at equal times, leaving is applied before joining.
    edges.sort()
    peak, at, now = 0, None, 0
    for ts, delta in edges:
        now += delta
        if now > peak:
            peak, at = now, ts
    return peak, at


@dataclass(frozen=True, slots=True)
class Figures:
    unique_listeners: int
    unique_method: str
    listening_minutes: float
    peak_concurrent: int
    peak_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "unique_listeners": self.unique_listeners,
            "unique_method": self.unique_method,
            "listening_minutes": self.listening_minutes,
            "peak_concurrent": self.peak_concurrent,
            "peak_at": self.peak_at,
        }


def figures(
    sessions: list[SessionRecord], window_s: float, exact_limit: int = EXACT_UNIQUE_LIMIT
) -> Figures:
    unique = UniqueCounter(exact_limit)
    for rec in sessions:
        unique.add(rec.session)
    peak, at = peak_concurrent(sessions, window_s)
    minutes = round(sum(rec.played_s for rec in sessions) / 60, 3)
    return Figures(unique.count(), unique.method, minutes, peak, at)


@dataclass(frozen=True, slots=True)
class Report:
    events: int
    sessions: int
    filtered: dict[str, int]
    counted: int
    all: Figures
    live: Figures
    replay: Figures
    window_s: float
    min_listen_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "definitions": "docs/metrics.md",
            "presence_window_s": self.window_s,
            "min_listen_s": self.min_listen_s,
            "events": self.events,
            "sessions": self.sessions,
            "filtered": dict(self.filtered),
            "counted_sessions": self.counted,
            "all": self.all.to_json(),
            "live": self.live.to_json(),
            "replay": self.replay.to_json(),
        }


def compute(
    events: Iterable[Event],
    *,
    window_s: float = PRESENCE_WINDOW_S,
    min_listen_s: float = MIN_LISTEN_S,
    exact_limit: int = EXACT_UNIQUE_LIMIT,
) -> Report:
    """Every audience figure of docs/metrics.md from the events of one space."""
    listed = list(events)
    sessions = sessions_from(listed)
    filtered = {"user_agent": 0, "min_listen": 0}
    counted: list[SessionRecord] = []
    for rec in sessions.values():
        reason = filter_reason(rec, min_listen_s)
        if reason is None:
            counted.append(rec)
        else:
            filtered[reason] += 1
    by_mode = {m: [r for r in counted if r.mode is m] for m in Mode}
    return Report(
        events=len(listed),
        sessions=len(sessions),
        filtered=filtered,
        counted=len(counted),
        all=figures(counted, window_s, exact_limit),
        live=figures(by_mode[Mode.LIVE], window_s, exact_limit),
        replay=figures(by_mode[Mode.REPLAY], window_s, exact_limit),
        window_s=window_s,
        min_listen_s=min_listen_s,
    )


# -- who is listening now (the HTTP layer's table) --------------------------------------


@dataclass(slots=True)
class LiveSession:
    mode: Mode
    ua: str
    client: str
    last_seen: float
    played_s: float = 0.0
    # Added to the cluster's unique-listener count (once it passes the report's filters).
    counted: bool = False

    def qualifies(self) -> bool:
        """Passes the same filters as the report (docs/metrics.md), so far."""
        return self.ua not in BOT_CLASSES and self.played_s >= MIN_LISTEN_S


# Ended session ids remembered per space (about 3 MB at most).
MAX_ENDED_REMEMBERED = 50_000


class ListenerSessions:
    """Open sessions of one space, forgotten PRESENCE_WINDOW_S after their last beat."""

    def __init__(self, window_s: float = PRESENCE_WINDOW_S) -> None:
        self.window_s = window_s
        self._open: dict[str, LiveSession] = {}
        self._swept_at = -math.inf
        # Sessions ended here, newest last: a session id that proves itself (session_ids)
        # may go on after a takeover, but not once its listener said it ended.
        self._ended: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._open)

    def start(self, session: str, live: LiveSession) -> None:
        self._open[session] = live

    def get(self, session: str, now: float) -> LiveSession | None:
        live = self._open.get(session)
        if live is None or now - live.last_seen >= self.window_s:
            return None
        return live

    def beat(self, session: str, played_s: float, now: float) -> float:
        """Mark a heartbeat; returns played_s clamped to what the elapsed time allows."""
        live = self._open[session]
        allowed = max(0.0, now - live.last_seen) + PLAYED_SLACK_S
        live.last_seen = now
        played = min(max(0.0, played_s), allowed)
        live.played_s += played
        return played

    def end(self, session: str) -> None:
        self._open.pop(session, None)
        self._ended[session] = None
        if len(self._ended) > MAX_ENDED_REMEMBERED:
            del self._ended[next(iter(self._ended))]

    def ended(self, session: str) -> bool:
        return session in self._ended

    def sweep(self, now: float) -> None:
        """Forget expired sessions; runs at most once per heartbeat interval."""
        if now - self._swept_at < HEARTBEAT_S:
            return
        self._swept_at = now
        for sid in [s for s, v in self._open.items() if now - v.last_seen >= self.window_s]:
            del self._open[sid]

    def present(self, now: float) -> int:
        """Sessions within the presence window, whatever their user agent: the seats that
        admission control counts (a scripted client holds one as a browser does)."""
        return sum(1 for v in self._open.values() if now - v.last_seen < self.window_s)

    def concurrent(self, now: float) -> int:
        """Listeners now: present sessions whose user agent is not filtered as a bot."""
        return sum(
            1 for v in self._open.values()
            if now - v.last_seen < self.window_s and v.ua not in BOT_CLASSES
        )  # fmt: skip


# -- the printed report ------------------------------------------------------------------


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_report(report: Report, source: str) -> str:
    """The figures for people, each under the name docs/metrics.md defines it by."""
    groups = {"all": report.all, "live": report.live, "replay": report.replay}
    head = f"{'':22}{'all':>12}{'live':>12}{'replay':>12}"

    def row(name: str, values: list[str]) -> str:
        return f"  {name:20}" + "".join(f"{v:>12}" for v in values)

    lines = [
        f"Audience from {source} (definitions: docs/metrics.md)",
        f"  events                {report.events}",
        f"  sessions              {report.sessions}",
        f"  filtered.user_agent   {report.filtered['user_agent']}",
        f"  filtered.min_listen   {report.filtered['min_listen']}"
        f"  (under {report.min_listen_s:g} s played)",
        f"  counted_sessions      {report.counted}",
        "",
        head,
        row("unique_listeners", [str(f.unique_listeners) for f in groups.values()]),
        row("unique_method", [f.unique_method for f in groups.values()]),
        row("listening_minutes", [f"{f.listening_minutes:.3f}" for f in groups.values()]),
        row("peak_concurrent", [str(f.peak_concurrent) for f in groups.values()]),
        "",
    ]
    lines += [f"  peak_at.{k:14}{_when(f.peak_at)}" for k, f in groups.items()]
    lines.append(f"  presence window {report.window_s:g} s")
    return "\n".join(lines) + "\n"
