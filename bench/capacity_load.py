"""Load process of the capacity bench: many listeners of one style, on a shared schedule.

Run as ``python -m bench.capacity_load CONFIG.json RESULT.json``. Styles:

- ``ll``: an LL-HLS player as hls.js runs one in low-latency mode: the live playlist once,
  init once, then forever a blocking playlist reload for the part after the last one it has
  (``_HLS_msn``/``_HLS_part``, and ``_HLS_skip=YES`` when the playlist offers delta updates)
  and a GET of every part that reload lists, once, on one keep-alive HTTP/1.1 connection;
- ``std``: a standard-latency HLS player: the playlist every target duration (random phase),
  init once, start three segments from the live end, then every new full segment once;
- ``icecast``: one streaming GET per listener, counting bytes and the longest silence.

The schedule holds absolute ``time.monotonic()`` instants (CLOCK_MONOTONIC is one clock for
every process of the machine), so several load processes and the parent sampling the
servers' CPU from /proc all share one set of measurement windows. Stage k grows this
process's listeners to ``n`` from ``ramp_at`` on; ``[w0, w1]`` is its window. Listeners
stay connected from one stage to the next.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import resource
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.hls_load import Client, ConnectionLost, HttpConnection, parse_playlist

Pos = tuple[int, int]
_SEGMENT = b"\ns/"
LAG_PERIOD_S = 0.05


@dataclass
class Stats:
    """Counters of the whole process; a window is the difference of two copies."""

    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bytes_in: int = 0
    media: int = 0  # parts (ll) or segments (std) received
    skipped: int = 0  # parts or segments a listener never got (gone from the playlist)
    late: int = 0  # parts received > late_s after the first listener of this process had it

    def copy(self) -> Stats:
        return Stats(dict(self.requests), dict(self.errors), self.bytes_in, self.media,
                     self.skipped, self.late)  # fmt: skip

    def minus(self, before: Stats) -> dict[str, Any]:
        return {
            "requests": {k: v - before.requests.get(k, 0) for k, v in self.requests.items()},
            "errors": {k: d for k, v in self.errors.items() if (d := v - before.errors.get(k, 0))},
            "bytes_in": self.bytes_in - before.bytes_in,
            "media": self.media - before.media,
            "skipped": self.skipped - before.skipped,
            "late": self.late - before.late,
        }


STATS = Stats()


class CountingConnection(HttpConnection):
    """Counts every byte read, headers included: what the edge sent for this listener."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses (the parent asserts it).
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        STATS.bytes_in += len(data)
        super().data_received(data)


class CountingClient(Client):
    async def fetch(self, target: str, kind: str) -> tuple[int, bytes, float]:
        STATS.requests[kind] += 1
        head = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        for attempt in (1, 2):
            if self.conn is None or self.conn.transport is None:
                loop = asyncio.get_running_loop()
                _, self.conn = await loop.create_connection(
                    CountingConnection, self.host, self.port
                )
                if attempt == 2:
                    STATS.errors["reconnect"] += 1
            try:
                status, body, at = await self.conn.request(head)
            except ConnectionLost:
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if status != 200:
                STATS.errors[f"{kind} {status}"] += 1
            return status, body, at
        raise AssertionError("unreachable")


@dataclass
class Plan:
    host: str
    port: int
    base: str  # /live/ID/
    segment_parts: int
    late_s: float
    stop: list[bool] = field(default_factory=lambda: [False])
    first_seen: dict[Pos, float] = field(default_factory=dict)
    spreads: list[float] = field(default_factory=list)


def _linear(pos: Pos, segment_parts: int) -> int:
    return pos[0] * segment_parts + pos[1]


async def ll_listener(plan: Plan) -> None:
    """Blocking reload for the next part, then each listed part once (hls.js, low latency)."""
    client = CountingClient(plan.host, plan.port)
    try:
        status, body, _ = await client.fetch(plan.base + "audio.m3u8", "playlist")
        if status != 200:
            return
        await client.fetch(plan.base + "init.mp4", "init")
        listed, hint = parse_playlist(body, (-1, -1))
        last: Pos = listed[-1] if listed else (-1, -1)
        # hls.js asks for delta updates once it has the whole playlist, when they are offered.
        skip = "&_HLS_skip=YES" if b"CAN-SKIP-UNTIL=" in body else ""
        while hint is not None and not plan.stop[0]:
            reload = f"{plan.base}audio.m3u8?_HLS_msn={hint[0]}&_HLS_part={hint[1]}{skip}"
            status, body, _ = await client.fetch(reload, "reload")
            if status != 200:
                await asyncio.sleep(0.2)
                continue
            listed, hint = parse_playlist(body, last)
            if listed and last[0] >= 0:
                gap = _linear(listed[0], plan.segment_parts) - _linear(last, plan.segment_parts)
                STATS.skipped += max(0, gap - 1)
            for pos in listed:
                pstatus, _, at = await client.fetch(f"{plan.base}p/{pos[0]}.{pos[1]}.m4s", "part")
                if pstatus == 200:
                    STATS.media += 1
                    first = plan.first_seen.setdefault(pos, at)
                    spread = at - first
                    plan.spreads.append(spread)
                    if spread > plan.late_s:
                        STATS.late += 1
                last = pos
    except (ConnectionLost, OSError) as exc:
        STATS.errors[type(exc).__name__] += 1
    finally:
        client.close()


def segments_in(body: bytes) -> list[int]:
    """Media sequence numbers of the full segments a playlist lists (`s/N.m4s` lines)."""
    out: list[int] = []
    at = body.find(_SEGMENT)
    while at >= 0:
        end = body.index(b".", at + 3)
        out.append(int(body[at + 3 : end]))
        at = body.find(_SEGMENT, end)
    return out


def target_duration(body: bytes) -> float:
    at = body.find(b"#EXT-X-TARGETDURATION:")
    if at < 0:
        return 1.0
    return float(body[at + 22 : body.index(b"\n", at)])


async def std_listener(plan: Plan) -> None:
    """Playlist every target duration, each new full segment once, no parts."""
    client = CountingClient(plan.host, plan.port)
    try:
        status, body, _ = await client.fetch(plan.base + "audio.m3u8", "playlist")
        if status != 200:
            return
        await client.fetch(plan.base + "init.mp4", "init")
        period = target_duration(body)
        listed = segments_in(body)
        last = listed[-4] if len(listed) >= 4 else (listed[0] - 1 if listed else -1)
        next_poll = time.monotonic() + random.uniform(0, period)
        while not plan.stop[0]:
            for msn in listed:
                if msn <= last:
                    continue
                if last >= 0:
                    STATS.skipped += max(0, msn - last - 1)
                sstatus, _, _ = await client.fetch(f"{plan.base}s/{msn}.m4s", "segment")
                if sstatus == 200:
                    STATS.media += 1
                last = msn
            await asyncio.sleep(max(0.0, next_poll - time.monotonic()))
            next_poll += period
            status, body, _ = await client.fetch(plan.base + "audio.m3u8", "playlist")
            listed = segments_in(body) if status == 200 else []
    except (ConnectionLost, OSError) as exc:
        STATS.errors[type(exc).__name__] += 1
    finally:
        client.close()


class StreamListener(asyncio.Protocol):
    """One Icecast listener: a streaming GET whose bytes and silences are counted."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.head = b""
        self.ok: bool | None = None
        self.last = 0.0
        self.max_gap = 0.0
        self.closed = False
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        STATS.bytes_in += len(data)
        if self.ok is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            self.ok = b" 200" in self.head.split(b"\r\n", 1)[0]
            if not self.ok:
                STATS.errors[self.head.split(b"\r\n", 1)[0].decode("latin-1")[:40]] += 1
            self.head = b""
        elif self.last:
            self.max_gap = max(self.max_gap, now - self.last)
        self.last = now

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:  # closed by the server, not by the end of the run
            STATS.errors["closed by server"] += 1
        self.closed = True


async def icecast_listener(plan: Plan, streams: list[StreamListener]) -> None:
    loop = asyncio.get_running_loop()
    request = (
        f"GET {plan.base} HTTP/1.0\r\nHost: {plan.host}:{plan.port}\r\nIcy-MetaData: 0\r\n\r\n"
    ).encode()
    listener = StreamListener(request)
    STATS.requests["stream"] += 1
    try:
        await asyncio.wait_for(loop.create_connection(lambda: listener, plan.host, plan.port), 10)
    except (OSError, TimeoutError) as exc:
        STATS.errors[type(exc).__name__] += 1
        return
    streams.append(listener)


async def _sleep_until(at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))


async def _loop_lag(lags: list[float], stop: list[bool]) -> None:
    while not stop[0]:
        start = time.perf_counter()
        await asyncio.sleep(LAG_PERIOD_S)
        lags.append(time.perf_counter() - start - LAG_PERIOD_S)


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99),
            "max": round(ordered[-1], 4)}  # fmt: skip


def _cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    plan = Plan(cfg["host"], cfg["port"], cfg["base"], cfg["segment_parts"], cfg["late_s"])
    style = cfg["style"]
    tasks: list[asyncio.Task[None]] = []
    streams: list[StreamListener] = []
    lags: list[float] = []
    lag_task = asyncio.create_task(_loop_lag(lags, plan.stop))
    windows: list[dict[str, Any]] = []
    for stage in cfg["stages"]:
        await _sleep_until(stage["ramp_at"])
        gc.unfreeze()
        batch = 25
        while len(tasks) < stage["n"]:
            for _ in range(min(batch, stage["n"] - len(tasks))):
                if style == "ll":
                    tasks.append(asyncio.create_task(ll_listener(plan)))
                elif style == "std":
                    tasks.append(asyncio.create_task(std_listener(plan)))
                else:
                    tasks.append(asyncio.create_task(icecast_listener(plan, streams)))
            await asyncio.sleep(batch / stage["ramp_per_s"])
        gc.collect()
        gc.freeze()  # thousands of long-lived objects: full collections would stall the loop
        await _sleep_until(stage["w0"])
        before, cpu0, t0 = STATS.copy(), _cpu_s(), time.monotonic()
        lags.clear()
        plan.spreads.clear()
        for s in streams:
            s.max_gap = 0.0
        await _sleep_until(stage["w1"])
        t1 = time.monotonic()
        window = STATS.copy().minus(before)
        alive = [s for s in streams if s.ok and not s.closed]
        windows.append(
            {
                **window,
                "n": len(tasks),
                "seconds": round(t1 - t0, 3),
                "cpu_s": round(_cpu_s() - cpu0, 3),
                "loop_lag_s": _quantiles(lags),
                "part_spread_s": _quantiles(plan.spreads),
                "streams_alive": len(alive),
                "stream_max_gap_s": _quantiles([s.max_gap for s in alive]),
            }
        )
        print(f"window {len(windows)} done: n={len(tasks)}", file=sys.stderr, flush=True)
    plan.stop[0] = True
    await lag_task
    for s in streams:
        s.closed = True
        if s.transport is not None:
            s.transport.abort()
    done, pending = await asyncio.wait(tasks, timeout=cfg.get("hold_s", 3) + 2)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {"style": style, "windows": windows, "finished": len(done)}


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop  # optional: a faster event loop makes the load generator cheaper

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    deadline = cfg["stages"][-1]["w1"] - time.monotonic() + 30
    result = runner(asyncio.wait_for(run(cfg), deadline))
    result["event_loop"] = runner.__module__
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
