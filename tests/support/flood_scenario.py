"""A live space under a flood, measured by the people who matter: its speakers and listeners.

The flood (tests/support/flood.py) runs as its own process. This process creates the space
while the flood already runs, connects two aiortc speakers with tones, and follows the live
edge with many player-like listeners (blocking reload + preload hint + parts), each from
its own loopback address and /24, as real listeners come from many places. Every part's
arrival is compared with when it was due, from the playlist's PROGRAM-DATE-TIME and part
durations: the mixer labels its first sample with the wall clock, so ``due`` is when the
part's last sample was mixed, and ``delay`` is how long after that a listener had it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np

from tests.support.audio import decode_mp4, tone_power
from tests.support.flood import Plan
from tests.support.server import majlis_server
from tests.support.whip import Publisher, ToneTrack, publish

TONES = (440.0, 660.0)
SPEAKER_NAMES = ("flood-s1", "flood-s2")
# The targets of the scenario (issue 5).
START_TARGET_S = 2.0
ON_TIME_GRACE_S = 1.0  # a part is on time when it arrives ≤ part duration + 1 s after it began
ON_TIME_TARGET = 0.999
RECOVERY_TARGET_S = 5.0
# Each tone carries about half the energy when both play.
TONE_PRESENT = 0.15
# A part counts as back to normal when its delay is within this of the flood-free baseline.
NORMAL_MARGIN_S = 0.1
RECOVERY_WINDOW_S = 0.5
RECOVERY_SHARE = 0.99

T = TypeVar("T")
FLOOD_NICENESS = 10
REPO = Path(__file__).resolve().parents[2]
_PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="p/(\d+)\.(\d+)\.m4s"')
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p/(\d+)\.(\d+)\.m4s"')
_PDT_SEGMENT = re.compile(
    r"#EXT-X-PROGRAM-DATE-TIME:(\S+)\n(?:#EXT-X-PART:[^\n]*\n)*#EXTINF:[^\n]*\ns/(\d+)\.m4s"
)


@dataclass(frozen=True, slots=True)
class Scale:
    """How many legitimate clients and for how long."""

    listeners: int = 50
    flood_lead_s: float = 2.0  # the flood runs this long before the space is created
    after_flood_s: float = 10.0  # listening on once the flood stopped
    baseline_s: float = 4.0  # the last seconds of that: the flood-free baseline


@dataclass
class Timeline:
    """When each part began, on the server's mixer clock (wall seconds), from playlists."""

    segment_parts: int = 5
    part_duration: float = 1024 * 10 / 48_000
    dates: dict[int, float] = field(default_factory=dict)  # msn → PROGRAM-DATE-TIME
    durations: dict[tuple[int, int], float] = field(default_factory=dict)

    def note(self, text: str) -> None:
        for stamp, msn in _PDT_SEGMENT.findall(text):
            self.dates.setdefault(int(msn), datetime.fromisoformat(stamp).timestamp())
        for duration, msn, index in _PART.findall(text):
            self.durations.setdefault((int(msn), int(index)), float(duration))

    def position(self, msn: int, index: int) -> int:
        return msn * self.segment_parts + index

    def due(self, position: int) -> float | None:
        """When the part's last sample was mixed; None when its segment's date is unknown."""
        msn, index = divmod(position, self.segment_parts)
        start = self.dates.get(msn)
        if start is None:
            return None
        for i in range(index + 1):
            start += self.durations.get((msn, i), self.part_duration)
        return start


@dataclass
class Listener:
    """A player made of HTTP requests, from its own source address, that never gives up."""

    playlist_url: str
    source: str
    timeline: Timeline
    keep_media: bool = False
    first_position: int | None = None
    arrivals: dict[int, float] = field(default_factory=dict)  # position → wall time
    media: dict[int, bytes] = field(default_factory=dict)
    init: bytes = b""
    errors: Counter[str] = field(default_factory=Counter)
    stopped_at: float = 0.0

    def _url(self, msn: int, index: int) -> str:
        return self.playlist_url.rsplit("/", 1)[0] + f"/p/{msn}.{index}.m4s"

    async def run(self, stop: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(limit=0, local_addr=(self.source, 0))
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            try:
                text = await self._join(http, stop)
                while not stop.is_set() and text is not None:
                    text = await self._step(http, text)
            finally:
                self.stopped_at = time.time()

    async def _get(self, http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
        try:
            async with http.get(url) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1
            return 0, b""

    async def _join(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> str | None:
        while not stop.is_set():
            status, body = await self._get(http, self.playlist_url)
            if status == 200 and (hint := _HINT.search(body.decode())):
                text = body.decode()
                self.timeline.note(text)
                self.first_position = self.timeline.position(int(hint[1]), int(hint[2]))
                base = self.playlist_url.rsplit("/", 1)[0]
                self.init = (await self._get(http, base + "/init.mp4"))[1]
                return text
            self.errors[f"join {status}"] += 1
            await asyncio.sleep(0.1)
        return None

    async def _step(self, http: aiohttp.ClientSession, text: str) -> str | None:
        hint = _HINT.search(text)
        if hint is None:
            return None  # the space ended
        msn, index = int(hint[1]), int(hint[2])
        part = asyncio.create_task(self._get(http, self._url(msn, index)))
        status, body = await self._get(
            http, f"{self.playlist_url}?_HLS_msn={msn}&_HLS_part={index}"
        )
        pstatus, pdata = await part
        if pstatus == 200:
            self._arrived(msn, index, pdata)
        if status != 200:
            self.errors[f"reload {status}"] += 1
            await asyncio.sleep(0.05)
            return text
        text = body.decode()
        self.timeline.note(text)
        await self._fetch_missed(http, text)
        return text

    async def _fetch_missed(self, http: aiohttp.ClientSession, text: str) -> None:
        assert self.first_position is not None
        for _, msn_text, index_text in _PART.findall(text):
            msn, index = int(msn_text), int(index_text)
            pos = self.timeline.position(msn, index)
            if pos >= self.first_position and pos not in self.arrivals:
                status, data = await self._get(http, self._url(msn, index))
                if status == 200:
                    self._arrived(msn, index, data)
                else:
                    self.errors[f"part {status}"] += 1

    def _arrived(self, msn: int, index: int, data: bytes) -> None:
        pos = self.timeline.position(msn, index)
        if self.first_position is not None and pos >= self.first_position:
            self.arrivals.setdefault(pos, time.time())
            if self.keep_media:
                self.media.setdefault(pos, data)


class ProcessSampler:
    """Samples a process's resident memory and CPU time from /proc on a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int, float]] = []  # (wall, RSS bytes, CPU seconds)
        # (wall, busy CPU seconds of the whole machine, CPU seconds of this process)
        self.machine: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = Path(f"/proc/{self.pid}/status").read_text()
            rss_kb = int(
                next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1]
            )
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
            self.samples.append((time.time(), rss_kb * 1024, cpu))
            ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
            self.machine.append((time.time(), busy, time.process_time()))

    def cores(self, start: float, stop: float) -> tuple[float, float]:
        """(whole machine, this process) cores used on average between two instants."""
        inside = [m for m in self.machine if start <= m[0] <= stop] or self.machine[-1:]
        first, last = inside[0], inside[-1]
        span = max(last[0] - first[0], 1e-9)
        return (last[1] - first[1]) / span, (last[2] - first[2]) / span

    def at(self, wall: float) -> tuple[float, int, float]:
        """The last sample taken at or before ``wall`` (the first one if none)."""
        before = [s for s in self.samples if s[0] <= wall]
        return before[-1] if before else self.samples[0]


@dataclass
class Run:
    """Everything observed in one run, analysed by `analyse`."""

    flood: dict[str, Any] = field(default_factory=dict)
    server_flags: list[str] = field(default_factory=list)
    flood_ready_at: float = 0.0
    first_join_at: float = 0.0
    first_part_seen_at: float = 0.0
    listeners: list[Listener] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)
    sampler: ProcessSampler | None = None
    stage: list[dict[str, Any]] = field(default_factory=list)
    speakers_connected: list[str] = field(default_factory=list)
    server_exit: int | None = None
    # (wall, seconds) of `GET /healthz` on a connection of its own: the event loop's lag
    health: list[tuple[float, float]] = field(default_factory=list)
    server_log: str = ""
    speaker_sessions: list[str] = field(default_factory=list)  # WHIP session ids
    create_space_s: float = 0.0
    speaker_events: list[str] = field(default_factory=list)  # seconds after the flood began
    speakers_closing: bool = False
    retries: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _create_space(base: str, admin: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin}"}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        http.post(base + "/api/spaces", json={"title": "Flood"}, headers=headers) as r,
    ):
        body: dict[str, Any] = await r.json()
        if r.status != 201:
            raise AssertionError(f"creating the space under the flood: {r.status} {body}")
        return body


async def _first_part(http: aiohttp.ClientSession, url: str, deadline: float) -> float:
    """Poll the live playlist until it lists a part; when that was seen (wall)."""
    while time.time() < deadline:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(url) as resp:
                if resp.status == 200 and "#EXT-X-PART:" in await resp.text():
                    return time.time()
        await asyncio.sleep(0.02)
    raise AssertionError("no part was published within the deadline")


async def _probe_health(url: str, run: Run) -> None:
    connector = aiohttp.TCPConnector(limit=1, local_addr=("127.30.0.1", 0))
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        while True:
            began = time.perf_counter()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as resp:
                    await resp.read()
            run.health.append((time.time(), time.perf_counter() - began))
            await asyncio.sleep(0.5)


async def _flood_line(stream: asyncio.StreamReader, within: float) -> dict[str, Any]:
    line = await asyncio.wait_for(stream.readline(), within)
    if not line:
        raise AssertionError("the flood process exited without reporting")
    data: dict[str, Any] = json.loads(line)
    return data


def server_flags() -> list[str]:
    """Flags that make every loopback address a client of its own, if the server has them.

    The server exempts loopback from per-address limits by default; here 127.0.0.0/8 stands
    for the Internet, so the flood's addresses must be limited like any other.
    """
    help_text = subprocess.run(
        [sys.executable, "-m", "majlis.cli", "serve", "--help"],
        capture_output=True, text=True, timeout=30, check=False,
    ).stdout  # fmt: skip
    return ["--limit-exempt", "none"] if "--limit-exempt" in help_text else []


async def run_scenario(workdir: Path, plan: Plan, scale: Scale) -> Run:
    """Run the whole scenario against a fresh server; returns what was observed."""
    run = Run(server_flags=server_flags())
    # Objects left by whatever ran before in this process (a whole test session) would make
    # every full collection pause the listeners for tens of milliseconds: set them aside.
    gc.collect()
    gc.freeze()
    try:
        await _run(workdir, plan, scale, run)
    finally:
        gc.unfreeze()
    return run


async def _run(workdir: Path, plan: Plan, scale: Scale, run: Run) -> None:
    # INFO logs say why a speaker left the stage.
    with majlis_server(workdir / "data", "--verbose", *run.server_flags) as server:
        run.sampler = ProcessSampler(server.process.pid)
        run.sampler.start()
        try:
            await _with_flood(server.base, server.admin_token, plan, scale, run)
        finally:
            run.sampler.stop()
            run.server_log = server.log()
        run.server_exit = server.process.poll()


async def _with_flood(base: str, admin: str, plan: Plan, scale: Scale, run: Run) -> None:
    # The flood's own CPU would come from other machines in the field; here it shares the
    # server's cores, so it yields them: what it costs the server is what is measured.
    flood = await asyncio.create_subprocess_exec(
        "nice", "-n", str(FLOOD_NICENESS), sys.executable, "-m", "tests.support.flood",
        "--base", base, *plan.args(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    assert flood.stdin is not None and flood.stdout is not None
    try:
        ready = await _flood_line(flood.stdout, 30)
        run.flood_ready_at = ready["at"]
        await asyncio.sleep(scale.flood_lead_s)
        probe = asyncio.create_task(_probe_health(base + "/healthz", run))
        try:
            await _live_part(base, admin, flood.stdin, flood.stdout, plan, scale, run)
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
    finally:
        if flood.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                flood.kill()  # only reached when something above failed
        await flood.wait()


async def _live_part(
    base: str,
    admin: str,
    commands: asyncio.StreamWriter,
    reports: asyncio.StreamReader,
    plan: Plan,
    scale: Scale,
    run: Run,
) -> None:
    began = time.time()
    space = await _retry(lambda: _create_space(base, admin), "creating the space", run)
    run.create_space_s = time.time() - began
    point = {"space_id": space["id"], "speaker_token": space["speaker_token"]}
    commands.write((json.dumps(point) + "\n").encode())
    await commands.drain()
    playlist = base + space["playlist_url"]
    connector = aiohttp.TCPConnector(limit=0, local_addr=("127.20.1.1", 0))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        pubs: list[Publisher] = []
        try:
            run.first_join_at = time.time()
            pubs.append(await _retry(lambda: _speaker(http, base, space, 0), "speaker 1", run))
            _watch(pubs[-1], SPEAKER_NAMES[0], run)
            try:
                run.first_part_seen_at = await _first_part(http, playlist, time.time() + 60)
            except AssertionError as exc:
                run.errors.append(str(exc))
            pubs.append(await _retry(lambda: _speaker(http, base, space, 1), "speaker 2", run))
            _watch(pubs[-1], SPEAKER_NAMES[1], run)
            run.speaker_sessions = [p.location.rsplit("/", 1)[1] for p in pubs]
            await _listen(base, space, playlist, reports, plan, scale, run)
            run.speakers_connected = [
                n
                for n, p in zip(SPEAKER_NAMES, pubs, strict=False)
                if p.pc.connectionState == "connected"
            ]
        finally:
            run.speakers_closing = True
            for pub in pubs:
                await pub.pc.close()


def _watch(pub: Publisher, name: str, run: Run) -> None:
    """Note every change of the speaker's own connection and ICE states, with the time."""
    pc = pub.pc

    def note(what: str, state: str) -> None:
        if not run.speakers_closing:  # our own close at the end is no news
            run.speaker_events.append(
                f"{time.time() - run.flood_ready_at:.1f} s {name} {what} {state}"
            )

    pc.on("connectionstatechange", lambda: note("connection", pc.connectionState))
    pc.on("iceconnectionstatechange", lambda: note("ICE", pc.iceConnectionState))


# A client that is refused or times out under the flood tries again, as people do; the
# time it took counts against the target, the failures are reported.
RETRY_FOR_S = 60.0


async def _retry(attempt: Callable[[], Awaitable[T]], what: str, run: Run) -> T:
    deadline = time.time() + RETRY_FOR_S
    while True:
        try:
            return await attempt()
        except (AssertionError, aiohttp.ClientError, TimeoutError) as exc:
            run.retries.append(f"{what}: {str(exc)[:200] or type(exc).__name__}")
            if time.time() > deadline:
                raise
        await asyncio.sleep(0.5)


async def _speaker(
    http: aiohttp.ClientSession, base: str, space: dict[str, Any], i: int
) -> Publisher:
    token = space["host_token"] if i == 0 else space["speaker_token"]
    track = ToneTrack(TONES[i])
    return await publish(http, base, space["whip_url"], token, track, name=SPEAKER_NAMES[i])


async def _listen(
    base: str,
    space: dict[str, Any],
    playlist: str,
    reports: asyncio.StreamReader,
    plan: Plan,
    scale: Scale,
    run: Run,
) -> None:
    stop = asyncio.Event()
    run.listeners = [
        Listener(playlist, _listener_address(i), run.timeline, keep_media=i == 0)
        for i in range(scale.listeners)
    ]
    tasks = [asyncio.create_task(listener.run(stop)) for listener in run.listeners]
    try:
        done = await _flood_line(reports, plan.seconds + 60)
        run.flood = done
        await asyncio.sleep(max(0.0, done["stop_signal_at"] + scale.after_flood_s - time.time()))
        run.stage = await _stage(base + space["state_url"])
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        run.errors += [repr(r) for r in results if isinstance(r, BaseException)]


def _listener_address(i: int) -> str:
    # Each listener in a /24 of its own: per-prefix limits must not lump them together.
    return f"127.{10 + i // 250}.{i % 250}.1"


async def _stage(url: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(url) as resp,
    ):
        state: dict[str, Any] = await resp.json()
    stage: list[dict[str, Any]] = state["stage"]
    return stage


# -- analysis -------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, float]:
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"count": 0}
    return {
        "count": int(arr.size),
        "p50": round(float(np.percentile(arr, 50)), 4),
        "p95": round(float(np.percentile(arr, 95)), 4),
        "p99": round(float(np.percentile(arr, 99)), 4),
        "max": round(float(arr.max()), 4),
    }


@dataclass(frozen=True, slots=True)
class Delivery:
    due: float  # when the part's last sample was mixed (wall)
    delay: float  # arrival − due; inf when the listener never got it


def deliveries(run: Run) -> list[Delivery]:
    """Every part each listener should have had, from its join until shortly before it left."""
    out = []
    for listener in run.listeners:
        if listener.first_position is None:
            continue
        pos = listener.first_position
        while (due := run.timeline.due(pos)) is not None:
            if due + ON_TIME_GRACE_S > listener.stopped_at:
                break
            arrived = listener.arrivals.get(pos)
            out.append(Delivery(due, arrived - due if arrived is not None else float("inf")))
            pos += 1
    return out


def _on_time(parts: list[Delivery], slack: float = 0.0) -> float:
    """Share of ``parts`` that arrived ≤ 1 s (+ ``slack``) after they were due."""
    limit = ON_TIME_GRACE_S + slack
    return sum(d.delay <= limit for d in parts) / len(parts) if parts else 0.0


def recovery(after: list[Delivery], stop: float, normal: float) -> float:
    """Seconds after ``stop`` from which every window holds ≥ 99 % parts no later than
    ``normal``."""
    worst_end = stop
    windows: dict[int, list[Delivery]] = {}
    for d in after:
        windows.setdefault(int((d.due - stop) // RECOVERY_WINDOW_S), []).append(d)
    for k, parts in windows.items():
        share = sum(d.delay <= normal for d in parts) / len(parts)
        if share < RECOVERY_SHARE:
            worst_end = max(worst_end, stop + (k + 1) * RECOVERY_WINDOW_S)
    return worst_end - stop


def _tones(
    listener: Listener, timeline: Timeline, until: float, seconds: float = 3.0
) -> dict[str, float]:
    chosen = [
        pos for pos in sorted(listener.media)
        if (due := timeline.due(pos)) is not None and until - seconds <= due <= until
    ]  # fmt: skip
    data = listener.init + b"".join(listener.media[p] for p in chosen)
    samples = decode_mp4(data) if chosen else np.zeros(0, np.float32)
    powers = {f"{f:.0f}": round(tone_power(samples, f), 3) for f in TONES}
    return {**powers, "seconds": round(samples.size / 48_000, 2)}


def analyse(run: Run, plan: Plan, scale: Scale) -> dict[str, Any]:
    flood = run.flood
    start, stop = flood["started_at"], flood["stop_signal_at"]
    parts = deliveries(run)
    during = [d for d in parts if d.due <= stop]
    after = [d for d in parts if d.due > stop]
    listened_until = min((ln.stopped_at for ln in run.listeners), default=stop)
    base_from = listened_until - ON_TIME_GRACE_S - scale.baseline_s
    baseline = _stats([d.delay for d in after if d.due >= base_from])
    normal = baseline.get("p99", 0.0) + NORMAL_MARGIN_S
    recovered = recovery([d for d in after if d.due < base_from], stop, normal)
    start_s = run.first_part_seen_at - run.first_join_at if run.first_part_seen_at else None
    first_due = run.timeline.due(0)
    memory = _memory(run, start, stop)
    cpu_per_response = _cpu_per_response(flood, memory, stop - start)
    assert run.sampler is not None
    machine, own = run.sampler.cores(start, stop)
    names = [s["name"] for s in run.stage]
    ear = run.listeners[0] if run.listeners else None
    tones_flood = _tones(ear, run.timeline, stop) if ear else {}
    tones_end = _tones(ear, run.timeline, listened_until - ON_TIME_GRACE_S) if ear else {}
    heard = all(tones_end.get(f"{f:.0f}", 0.0) > TONE_PRESENT for f in TONES) and all(
        tones_flood.get(f"{f:.0f}", 0.0) > TONE_PRESENT for f in TONES
    )
    kept = all(n in names for n in SPEAKER_NAMES) and run.speakers_connected == list(SPEAKER_NAMES)
    on_time = _on_time(during)
    met = {
        "started_on_time": start_s is not None and start_s <= START_TARGET_S,
        "parts_on_time_under_flood": bool(during) and on_time >= ON_TIME_TARGET,
        "speakers_kept_and_heard": kept and heard,
        "memory_bounded": memory["peak_growth_mb"] <= memory["limit_growth_mb"],
        "recovered": bool(after) and recovered <= RECOVERY_TARGET_S,
    }
    return {
        "flood": _flood_rates(flood),
        "listeners": len(run.listeners),
        "server_flags": run.server_flags,
        "start": {
            "create_space_s": round(run.create_space_s, 3),
            "join_to_first_part_s": round(start_s, 3) if start_s is not None else None,
            "join_to_first_part_due_s": round(first_due - run.first_join_at, 3)
            if first_due
            else None,
            "flood_running_for_s": round(run.first_join_at - start, 2),
            "target_s": START_TARGET_S,
        },
        "parts_under_flood": {
            "expected": len(during),
            "missing": sum(not np.isfinite(d.delay) for d in during),
            "on_time_share": round(on_time, 5),
            # The same 1 s, counted from the baseline's p99 instead of from due: what the
            # flood adds, on a machine whose other work already delays every part.
            "on_time_share_vs_baseline": round(_on_time(during, baseline.get("p99", 0.0)), 5),
            "target_share": ON_TIME_TARGET,
            "delay_after_due_s": _stats([d.delay for d in during]),
        },
        "after_flood": {
            "expected": len(after),
            "missing": sum(not np.isfinite(d.delay) for d in after),
            "on_time_share": round(_on_time(after), 5),
            "baseline_delay_s": baseline,
            "normal_delay_bound_s": round(normal, 4),
            # None: no part was made after the flood (the space died under it).
            "recovery_s": round(recovered, 2) if after else None,
            "target_s": RECOVERY_TARGET_S,
        },
        "speakers": {
            "stage": names,
            "connected": run.speakers_connected,
            "tone_power_under_flood": tones_flood,
            "tone_power_at_end": tones_end,
        },
        "memory": memory,
        "server_cores_during_flood": memory.pop("cores"),
        "server_cpu_ms_per_flood_response": cpu_per_response,
        "machine_cores_during_flood": round(machine, 2),
        "listener_process_cores_during_flood": round(own, 2),
        "healthz_s": {
            "under_flood": _stats([h for w, h in run.health if w <= stop]),
            "after_flood": _stats([h for w, h in run.health if w > stop + RECOVERY_TARGET_S]),
        },
        "speaker_drops_in_server_log": _drops(run.server_log, run.speaker_sessions),
        "speaker_state_changes": run.speaker_events[:20],
        "listener_errors": dict(sum((ln.errors for ln in run.listeners), Counter())),
        "met": met,
        "errors": run.errors,
        "retries": run.retries[:20],
    }


_DROP = re.compile(r"publisher (\S+) dropped: ([^\n]*)")


def _drops(log: str, sessions: list[str]) -> list[str]:
    """Why the server dropped each of our speakers, from its log."""
    return [f"{m[1]}: {m[2][:160]}" for m in _DROP.finditer(log) if m[1] in sessions]


# Peak RSS may grow by this much under the flood: ~40 KB per held connection, set from
# measurement (see docs/benchmarks.md), plus room for the space's own live edge.
RSS_GROWTH_BASE_MB = 64.0
RSS_PER_CONNECTION_KB = 40.0


def _memory(run: Run, start: float, stop: float) -> dict[str, Any]:
    sampler = run.sampler
    assert sampler is not None and sampler.samples
    mb = 1 / (1 << 20)
    before = sampler.at(start)
    at_stop = sampler.at(stop)
    peak = max(s[1] for s in sampler.samples)
    end = sampler.samples[-1]
    connections = sum(k.get("peak_connections", 0) for k in run.flood.get("kinds", {}).values())
    limit = RSS_GROWTH_BASE_MB + connections * RSS_PER_CONNECTION_KB / 1024
    return {
        "rss_before_flood_mb": round(before[1] * mb, 1),
        "rss_peak_mb": round(peak * mb, 1),
        "rss_at_flood_stop_mb": round(at_stop[1] * mb, 1),
        "rss_end_mb": round(end[1] * mb, 1),
        "peak_growth_mb": round((peak - before[1]) * mb, 1),
        "end_growth_mb": round((end[1] - before[1]) * mb, 1),
        "limit_growth_mb": round(limit, 1),
        "samples": len(sampler.samples),
        "cores": round((at_stop[2] - before[2]) / max(stop - start, 1e-9), 3),
    }


def _cpu_per_response(flood: dict[str, Any], memory: dict[str, Any], seconds: float) -> float:
    """Server CPU over the flood ÷ responses it gave the flood (listeners' share included)."""
    answered: int = sum(v.get("responses", 0) for v in flood.get("kinds", {}).values())
    return round(float(memory["cores"]) * seconds / max(answered, 1) * 1000, 3)


def _flood_rates(flood: dict[str, Any]) -> dict[str, Any]:
    kinds = flood.get("kinds", {})
    return {
        "seconds": flood.get("seconds"),
        "client_cpu_s": flood.get("cpu_s"),
        "open_file_limit": flood.get("open_file_limit"),
        "requests_per_s": {k: v["requests_per_s"] for k, v in kinds.items()},
        "peak_connections": {k: v["peak_connections"] for k, v in kinds.items()},
        "held_concurrent_peak": kinds.get("held", {}).get("peak_connections", 0),
        "slowloris_concurrent_peak": kinds.get("slowloris", {}).get("peak_connections", 0),
        "kinds": kinds,
    }
