"""Many LL-HLS listeners in one asyncio process: the audience of the edge tests.

Run as ``python -m tests.support.hls_load CONFIG.json RESULT.json``. Each listener behaves
like a low-latency player on keep-alive HTTP/1.1 connections, and costs only a few
microseconds per request (raw asyncio protocols, no HTTP library):

- ``hint`` listeners (like tests/support/player.py): the blocking playlist reload for the
  next part and the preload-hint part, together on two connections;
- ``reload`` listeners (like hls.js): the blocking reload, then the parts it lists.

Listener i uses edge i % len(edges). One listener of each style goes straight to the origin:
its arrival time of each part is the baseline of the edge latency. Between the two
``window-start`` / ``window-end`` lines printed on stdout, the process counts the origin's
live responses (from its /metrics, less the direct listeners' own requests), its own CPU
and its event loop's lag. It stops by itself within ``deadline_s``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import resource
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

STYLES = ("hint", "reload")
_HINT = b'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p/'
_PART = b'URI="p/'  # before the hint, only EXT-X-PART lines name parts
_METRIC = re.compile(r'^majlis_live_responses_total\{kind="(\w+)"\} (\d+)', re.M)

Pos = tuple[int, int]  # (media sequence number, part index)


class ConnectionLost(Exception):
    pass


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, Content-Length or chunked."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes, float]] | None = None
        self._head: tuple[int, int, bool] | None = None  # status, header length, chunked
        self._length = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionLost(str(exc)))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._head is None and not self._parse_head():
            return
        assert self._head is not None
        status, start, chunked = self._head
        if chunked:
            body = self._dechunk(start)
            if body is None:
                return
        else:
            if len(self._buffer) < start + self._length:
                return
            body = bytes(self._buffer[start : start + self._length])
            del self._buffer[: start + self._length]
        self._head = None
        # Arrival time taken here, not where the awaiting listener resumes one loop turn later.
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((status, body, time.perf_counter()))

    def _parse_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        self._length, chunked = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self._length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        self._head = (status, end + 4, chunked)
        return True

    def _dechunk(self, start: int) -> bytes | None:
        body, pos, buf = bytearray(), start, self._buffer
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            if size == 0:
                if buf.find(b"\r\n", eol + 2) < 0:
                    return None
                del buf[: buf.find(b"\r\n", eol + 2) + 2]
                return bytes(body)
            if len(buf) < eol + 2 + size + 2:
                return None
            body += buf[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2

    async def request(self, head: bytes) -> tuple[int, bytes, float]:
        if self.transport is None:
            raise ConnectionLost("not connected")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head)
        return await self._waiter


@dataclass
class Client:
    """A connection that reconnects when the server closed it."""

    host: str
    port: int
    conn: HttpConnection | None = None

    async def get(
        self, target: str, counts: dict[str, int] | None = None
    ) -> tuple[int, bytes, float]:
        if counts is not None:
            counts[_kind(target)] += 1
        head = f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        for attempt in (1, 2):
            if self.conn is None or self.conn.transport is None:
                loop = asyncio.get_running_loop()
                _, self.conn = await loop.create_connection(HttpConnection, self.host, self.port)
            try:
                return await self.conn.request(head)
            except ConnectionLost:
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()


def _kind(target: str) -> str:
    if ".m3u8" in target:
        return "blocking_playlist" if "_HLS_msn" in target else "playlist"
    if target.endswith("init.mp4"):
        return "init"
    return "part" if "/p/" in target else "other"


def parse_playlist(body: bytes, after: Pos) -> tuple[list[Pos], Pos | None]:
    """The parts listed after ``after``, in order, and the preload hint.

    Read backwards from the end: a listener following the live edge needs the last one or
    two parts, and a regular expression over the whole playlist would cost more than the
    request itself.
    """
    end = body.rfind(_HINT)
    hint = _position(body, end + len(_HINT)) if end >= 0 else None
    if end < 0:
        end = len(body)
    new: list[Pos] = []
    while (at := body.rfind(_PART, 0, end)) >= 0:
        pos = _position(body, at + len(_PART))
        if pos <= after:
            break
        new.append(pos)
        end = at
    new.reverse()
    return new, hint


def _position(body: bytes, start: int) -> Pos:
    dot = body.index(b".", start)
    return int(body[start:dot]), int(body[dot + 1 : body.index(b".", dot + 1)])


@dataclass
class Listener:
    edge: int  # -1: straight to the origin
    style: str
    host: str
    port: int
    base: str  # the space's /live/ID/ path
    sample: bool
    counts: dict[str, int] | None = None  # requests by kind (direct listeners only)
    arrivals: dict[Pos, float] = field(default_factory=dict)
    init: bytes = b""
    media: list[bytes] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: int = 0

    def _record(self, pos: Pos, data: bytes, at: float) -> None:
        self.arrivals[pos] = at
        if self.sample:
            self.media.append(data)

    async def run(self, stop_at: list[float]) -> None:
        main = Client(self.host, self.port)
        side = Client(self.host, self.port) if self.style == "hint" else None
        try:
            await self._follow(main, side, stop_at)
        except (ConnectionLost, OSError) as exc:
            self.errors[type(exc).__name__] += 1
        finally:
            main.close()
            if side is not None:
                side.close()

    async def _get(self, client: Client, target: str) -> tuple[int, bytes, float]:
        self.requests += 1
        status, body, at = await client.get(self.base + target, self.counts)
        if status != 200:
            self.errors[f"{_kind(target)} {status}"] += 1
        return status, body, at

    async def _follow(self, main: Client, side: Client | None, stop_at: list[float]) -> None:
        status, body, _ = await self._get(main, "audio.m3u8")
        if status != 200:
            return
        _, self.init, _ = await self._get(main, "init.mp4")
        listed, hint = parse_playlist(body, (-1, -1))
        last: Pos = listed[-1] if listed else (-1, -1)  # start at the live edge
        while hint is not None and time.perf_counter() < stop_at[0]:
            reload = f"audio.m3u8?_HLS_msn={hint[0]}&_HLS_part={hint[1]}"
            held = None
            if side is not None:
                held = asyncio.ensure_future(self._hint(side, hint))
            status, body, _ = await self._get(main, reload)
            if held is not None and await held and hint > last:
                last = hint
            if status != 200:
                await asyncio.sleep(0.2)
                continue
            listed, hint = parse_playlist(body, last)
            for pos in listed:
                pstatus, data, at = await self._get(main, f"p/{pos[0]}.{pos[1]}.m4s")
                if pstatus == 200:
                    self._record(pos, data, at)
                last = pos

    async def _hint(self, side: Client, pos: Pos) -> bool:
        status, data, at = await self._get(side, f"p/{pos[0]}.{pos[1]}.m4s")
        if status == 200 and pos not in self.arrivals:
            self._record(pos, data, at)
        return status == 200


async def _origin_counts(origin: Client) -> dict[str, int]:
    status, body, _ = await origin.get("/metrics")
    assert status == 200, f"/metrics answered {status}"
    return {k: int(v) for k, v in _METRIC.findall(body.decode())}


async def _loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.05)
        lags.append(time.perf_counter() - start - 0.05)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {
        "n": len(values),
        "min": round(ordered[0], 4),
        "mean": round(statistics.fmean(values), 4),
        "p50": at(0.5),
        "p90": at(0.9),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 4),
    }


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "loopback targets only"
    return parts.hostname, parts.port or 80


def _make_listeners(cfg: dict[str, Any]) -> list[Listener]:
    base = cfg["path"].rsplit("/", 1)[0] + "/"
    host, port = _address(cfg["origin"])
    listeners = [Listener(-1, style, host, port, base, True, defaultdict(int)) for style in STYLES]
    per_sample: dict[tuple[int, str], int] = defaultdict(int)
    for i in range(cfg["listeners"]):
        edge = i % len(cfg["edges"])
        style = STYLES[(i // len(cfg["edges"])) % len(STYLES)]
        sample = per_sample[(edge, style)] < cfg["samples_per_edge_style"]
        per_sample[(edge, style)] += 1
        ehost, eport = _address(cfg["edges"][edge])
        listeners.append(Listener(edge, style, ehost, eport, base, sample))
    return listeners


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    listeners = _make_listeners(cfg)
    segment_parts = cfg["segment_parts"]
    base = cfg["path"].rsplit("/", 1)[0] + "/"
    probe: dict[str, int] = defaultdict(int)
    direct = {lst.style: lst for lst in listeners if lst.edge < 0}
    origin = Client(*_address(cfg["origin"]))
    run_before = await _origin_counts(origin)
    tasks: list[asyncio.Task[None]] = []
    stop_at = [time.perf_counter() + cfg["deadline_s"]]  # moved once the window is known
    for i, listener in enumerate(listeners):
        tasks.append(asyncio.create_task(listener.run(stop_at)))
        if i % 25 == 24:
            await asyncio.sleep(25 / cfg["ramp_per_s"])
    gc.collect()
    gc.freeze()  # thousands of live objects: full collections would stall the loop
    lags: list[float] = []
    stop_lag = asyncio.Event()
    lag_task = asyncio.create_task(_loop_lag(lags, stop_lag))

    await asyncio.sleep(cfg["warmup_s"])
    before = await _origin_counts(origin)
    edge_before = await _live_edge(origin, base, segment_parts, probe)
    direct_before = {s: dict(d.counts or {}) for s, d in direct.items()}
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    lags.clear()
    print("window-start", flush=True)
    await asyncio.sleep(cfg["measure_s"])
    after = await _origin_counts(origin)
    edge_after = await _live_edge(origin, base, segment_parts, probe)
    direct_after = {s: dict(d.counts or {}) for s, d in direct.items()}
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    t1 = time.perf_counter()
    stop_at[0] = t1 + 0.5
    print("window-end", flush=True)
    window_lags = list(lags)
    stop_lag.set()
    done, pending = await asyncio.wait(tasks, timeout=cfg["hold_s"] + 2)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await lag_task
    run_after = await _origin_counts(origin)
    origin.close()
    run_own = {
        k: sum((d.counts or {}).get(k, 0) for d in direct.values()) + probe.get(k, 0)
        for k in run_after
    }

    own = {
        k: sum(direct_after[s].get(k, 0) - direct_before[s].get(k, 0) for s in direct)
        + (1 if k == "playlist" else 0)  # the live-edge probe at the start
        for k in after
    }
    cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        "listeners": cfg["listeners"],
        "edges": len(cfg["edges"]),
        "window_s": round(t1 - t0, 3),
        # Parts the origin wrote during the window (its playlist's preload hint, both ends).
        "parts_in_window": edge_after - edge_before,
        "origin_responses": {k: after[k] - before.get(k, 0) - own.get(k, 0) for k in after},
        "direct_requests": own,
        # The whole run, ramp included: what each edge asked of the origin against the
        # parts its listeners received (each part once per edge is the ideal).
        "run_origin_responses": {
            k: run_after[k] - run_before.get(k, 0) - run_own.get(k, 0) for k in run_after
        },
        "run_parts_per_edge": [
            len(set().union(*(lst.arrivals for lst in listeners if lst.edge == e)))
            for e in range(len(cfg["edges"]))
        ],
        "load_cpu_s": round(cpu_s, 3),
        "load_cpu_cores": round(cpu_s / (t1 - t0), 3),
        "loop_lag_s": percentiles(window_lags),
        "latency_vs_direct_s": _latency(listeners, direct, t0, t1),
        "listeners_report": _report(listeners, t0, t1, segment_parts),
        "samples": _save_samples(listeners, Path(cfg["sample_dir"])),
        "window_perf": [t0, t1],
        "finished": len(done),
    }


async def _live_edge(origin: Client, base: str, segment_parts: int, probe: dict[str, int]) -> int:
    """The position of the part the origin writes next, from its live playlist's hint."""
    status, body, _ = await origin.get(base + "audio.m3u8", probe)
    _, hint = parse_playlist(body, (1 << 62, 0))
    assert status == 200 and hint is not None, f"no live playlist at the origin: {status}"
    return hint[0] * segment_parts + hint[1]


def _latency(
    listeners: list[Listener], direct: dict[str, Listener], t0: float, t1: float
) -> dict[str, dict[str, float]]:
    """Part arrival at each edge listener minus its arrival at the direct one of its style."""
    deltas: dict[str, list[float]] = defaultdict(list)
    for lst in listeners:
        if lst.edge < 0:
            continue
        base = direct[lst.style].arrivals
        for pos, t in lst.arrivals.items():
            if pos in base and t0 <= base[pos] <= t1:
                delta = t - base[pos]
                deltas[f"edge{lst.edge}-{lst.style}"].append(delta)
                deltas[lst.style].append(delta)
                deltas["all"].append(delta)
    return {k: percentiles(v) for k, v in sorted(deltas.items())}


def _gaps(listener: Listener, segment_parts: int) -> int:
    """Parts missing between the first and the last part a listener received."""
    linear = [m * segment_parts + i for m, i in listener.arrivals]
    return max(linear) - min(linear) + 1 - len(linear) if linear else 0


def _report(listeners: list[Listener], t0: float, t1: float, segment_parts: int) -> dict[str, Any]:
    edge_listeners = [lst for lst in listeners if lst.edge >= 0]
    gaps = [_gaps(lst, segment_parts) for lst in edge_listeners]
    per_listener = [
        sum(1 for t in lst.arrivals.values() if t0 <= t <= t1) for lst in listeners if lst.edge >= 0
    ]
    errors: dict[str, int] = defaultdict(int)
    for lst in listeners:
        for k, n in lst.errors.items():
            errors[k] += n
    return {
        "parts_per_listener": percentiles([float(n) for n in per_listener]),
        "parts_per_listener_run": percentiles([float(len(x.arrivals)) for x in edge_listeners]),
        "missing_parts": sum(gaps),
        "listeners_missing_parts": sum(1 for g in gaps if g),
        "listeners_with_parts": sum(1 for n in per_listener if n > 0),
        "errors": dict(errors),
        "requests": sum(lst.requests for lst in listeners),
    }


def _save_samples(listeners: list[Listener], folder: Path) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for i, lst in enumerate(x for x in listeners if x.sample):
        path = folder / f"{i:02d}-edge{lst.edge}-{lst.style}.mp4"
        path.write_bytes(lst.init + b"".join(lst.media))
        saved.append({"edge": lst.edge, "style": lst.style, "path": str(path)})
    return saved


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(asyncio.wait_for(run(cfg), cfg["deadline_s"]))
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
