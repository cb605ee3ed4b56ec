"""Junk traffic against a Majlis server: a flood that a live space must survive.

Runs as its own process (`python -m tests.support.flood --base URL ...`) so that its work
never shares a GIL with the clients that measure the space. It starts flooding at once,
against a space id nobody created; a JSON line on stdin (`{"space_id": ..., "speaker_token":
...}`) points it at the real space. It stops by itself after ``--seconds``, or at EOF on
stdin, closes every socket it opened, and prints one JSON line of what it achieved.

Kinds of junk, each from its own pool of keep-alive connections spread over many loopback
source addresses (so per-address and per-prefix limits see several attackers):

- ``held``: blocking playlist reloads for the segment in progress (`_HLS_msn`), one per
  socket, thousands of sockets; the server holds each until the segment is complete.
- ``slowloris``: request headers trickled a byte at a time, never finished.
- ``playlist`` / ``part``: plain GETs of the live playlist and of recent parts.
- ``session``: listener joins (`POST /live/{space}/sessions`) with no body or junk bodies.
- ``whip``: WHIP offers with bad tokens, or the speaker token with a garbage SDP.
- ``whip_idle``: the speaker token with a valid-looking SDP whose only candidate nobody
  answers: the server sets up a peer that never connects.

The output counts, per kind, requests per second achieved, responses by status, transport
errors, and the peak number of concurrent connections held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import resource
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

_HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p/(\d+)\.(\d+)\.m4s"')
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.IGNORECASE)
# Past this a held reload has outlived the server's own hold (3 target durations).
REQUEST_TIMEOUT_S = 10.0
# Between two attempts after a refusal or an error: a flood that backs off a little still
# floods, and does not turn a defence's 429 into a busy loop on this process.
BACKOFF_S = 0.5
MAX_BODY_BYTES = 4 << 20
# Statuses by which a server asks a client to come back later.
REFUSED = (429, 503)


@dataclass(frozen=True, slots=True)
class Plan:
    """How hard to flood: connections per kind and requests per second per kind."""

    seconds: float = 60.0
    held: int = 3000
    slowloris: int = 300
    slowloris_interval_s: float = 1.0
    playlist_rate: float = 400.0
    part_rate: float = 400.0
    session_rate: float = 150.0
    whip_rate: float = 60.0
    whip_idle_rate: float = 0.2
    connections_per_kind: int = 32
    sources: int = 16
    source_prefix: str = "127.77"

    def args(self) -> list[str]:
        """The command-line flags that reproduce this plan."""
        out = []
        for name in self.__dataclass_fields__:
            out += ["--" + name.replace("_", "-"), str(getattr(self, name))]
        return out


@dataclass
class KindStats:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    open: int = 0
    peak_open: int = 0
    # Connections the server closed or answered before the request was complete.
    closed_by_server: int = 0

    def opened(self) -> None:
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)

    def summary(self, seconds: float) -> dict[str, Any]:
        done = sum(self.statuses.values())
        return {
            "requests": self.sent,
            "responses": done,
            "requests_per_s": round(self.sent / seconds, 1) if seconds > 0 else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "peak_connections": self.peak_open,
            "closed_by_server": self.closed_by_server,
        }


class Target:
    """What the flood aims at; the space id changes once the real space exists."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.space_id = "no-such-space-" + secrets.token_hex(4)
        self.speaker_token = "junk." + secrets.token_urlsafe(24)
        self.next_msn: int | None = None  # segment in progress, from the playlist's hint
        self.next_part = 0
        self.live = asyncio.Event()

    def point(self, space_id: str, speaker_token: str) -> None:
        self.space_id = space_id
        self.speaker_token = speaker_token
        self.next_msn = None
        self.live.clear()


class Connection:
    """One HTTP/1.1 keep-alive connection spoken by hand: cheaper than a client library."""

    def __init__(self, target: Target, source: str, stats: KindStats) -> None:
        self.target = target
        self.source = source
        self.stats = stats
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.target.host, self.target.port, local_addr=(self.source, 0)
        )
        self.stats.opened()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.stats.open -= 1
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        self.stats.sent += 1
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        if m := _CONTENT_LENGTH.search(head):
            body = await self.reader.readexactly(min(int(m.group(1)), MAX_BODY_BYTES))
        else:
            body = await self.reader.read(MAX_BODY_BYTES)
            self.close()
        if self.writer is not None and _CLOSE.search(head):
            self.close()
        self.stats.statuses[status] += 1
        return status, body


def _request(method: str, path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: flood/1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def valid_looking_offer() -> bytes:
    """An Opus offer that passes every check, with one candidate on a port nobody answers."""
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    lines = [
        "v=0", f"o=- {random.getrandbits(62)} 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
        "a=group:BUNDLE 0", "a=msid-semantic:WMS *",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 127.0.0.1", "a=sendonly", "a=mid:0",
        f"a=msid:{secrets.token_hex(8)} {secrets.token_hex(8)}", "a=rtcp:9 IN IP4 0.0.0.0",
        "a=rtcp-mux", f"a=ssrc:{random.getrandbits(31)} cname:{secrets.token_hex(8)}",
        "a=rtpmap:111 opus/48000/2", f"a=ice-ufrag:{secrets.token_hex(4)}",
        f"a=ice-pwd:{secrets.token_hex(12)}", f"a=fingerprint:sha-256 {fingerprint}",
        "a=setup:actpass",
        # The discard port: ICE checks to it are never answered.
        "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "a=end-of-candidates",
    ]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n").encode()


class Flood:
    def __init__(self, base: str, plan: Plan) -> None:
        url = urlsplit(base)
        assert url.hostname is not None and url.port is not None
        self.plan = plan
        self.target = Target(url.hostname, url.port)
        self.host = f"{url.hostname}:{url.port}"
        self.stats: dict[str, KindStats] = {}
        self.stop = asyncio.Event()
        self._sources = [
            f"{plan.source_prefix}.{i % 4}.{i // 4 + 1}" for i in range(max(1, plan.sources))
        ]
        self._rng = random.Random(5)
        self.started_at = 0.0
        self.stop_signal_at = 0.0  # when every worker was told to stop
        self.stopped_at = 0.0  # when every socket was closed

    def _stats(self, kind: str) -> KindStats:
        return self.stats.setdefault(kind, KindStats())

    def _source(self, i: int) -> str:
        return self._sources[i % len(self._sources)]

    def _get(self, path: str) -> bytes:
        return _request("GET", path, self.host, {}, b"")

    # -- the kinds of junk ------------------------------------------------------------------

    def _playlist_request(self) -> bytes:
        return self._get(f"/live/{self.target.space_id}/audio.m3u8")

    def _part_request(self) -> bytes:
        t = self.target
        msn = t.next_msn or 0
        pick = self._rng.random()
        if pick < 0.6 and msn > 0:
            return self._get(f"/live/{t.space_id}/p/{msn - 1}.{self._rng.randrange(5)}.m4s")
        if pick < 0.8 and msn > 0:
            return self._get(f"/live/{t.space_id}/s/{msn - 1}.m4s")
        return self._get(f"/live/{t.space_id}/p/{msn + 900}.0.m4s")

    def _session_request(self) -> bytes:
        path = f"/live/{self.target.space_id}/sessions"
        json_type = {"Content-Type": "application/json"}
        bodies: list[tuple[dict[str, str], bytes]] = [
            ({}, b""),
            (json_type, b'{"mode":"live"}'),
            (json_type, b'{"mode": 12, "x": [' + b"1," * 200 + b"1]}"),
            (json_type, secrets.token_bytes(64)),
            (json_type, b"{" * 512),
            (json_type, b'{"pad":"' + b"a" * 20_000 + b'"}'),
        ]
        headers, body = bodies[self._rng.randrange(len(bodies))]
        return _request("POST", path, self.host, headers, body)

    def _whip_request(self) -> bytes:
        path = f"/whip/{self.target.space_id}"
        sdp = {"Content-Type": "application/sdp"}
        good = {**sdp, "Authorization": f"Bearer {self.target.speaker_token}"}
        pick = self._rng.randrange(5)
        if pick == 0:
            return _request("POST", path, self.host, sdp, valid_looking_offer())
        if pick == 1:
            forged = {**sdp, "Authorization": "Bearer " + secrets.token_urlsafe(96)}
            return _request("POST", path, self.host, forged, valid_looking_offer())
        if pick == 2:
            return _request("POST", path, self.host, good, secrets.token_bytes(600))
        if pick == 3:
            return _request("POST", path, self.host, good, b"v=0\r\nm=audio 9 RTP/AVP 0\r\n")
        return _request("POST", path, self.host, {**good, "Content-Type": "text/plain"}, b"x")

    def _whip_idle_request(self) -> bytes:
        headers = {
            "Content-Type": "application/sdp",
            "Authorization": f"Bearer {self.target.speaker_token}",
        }
        path = f"/whip/{self.target.space_id}?name=junk"
        return _request("POST", path, self.host, headers, valid_looking_offer())

    # -- workers ----------------------------------------------------------------------------

    async def _paced(self, kind: str, index: int, rate: float, make: Callable[[], bytes]) -> None:
        """Send ``make()`` at ``rate`` requests per second on one keep-alive connection."""
        stats = self._stats(kind)
        conn = Connection(self.target, self._source(index), stats)
        period = 1.0 / rate
        due = time.perf_counter() + self._rng.uniform(0, period)
        try:
            while not self.stop.is_set():
                delay = due - time.perf_counter()
                if delay > 0:
                    await self._sleep(delay)
                due = max(due + period, time.perf_counter())
                status = await self._attempt(conn, stats, make())
                if status is None or status in REFUSED:
                    due = max(due, time.perf_counter() + BACKOFF_S)
        finally:
            conn.close()

    async def _attempt(self, conn: Connection, stats: KindStats, raw: bytes) -> int | None:
        """The response's status, or None when the connection failed (it is then closed)."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status, _ = await conn.request(raw)
            return status
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            stats.errors[type(e).__name__] += 1
            if isinstance(e, asyncio.IncompleteReadError | ConnectionResetError):
                stats.closed_by_server += 1
        except TimeoutError:
            stats.errors["timeout"] += 1
        conn.close()
        return None

    async def _held(self, index: int) -> None:
        """Hold a blocking reload for the segment in progress, again and again."""
        stats = self._stats("held")
        conn = Connection(self.target, self._source(index), stats)
        asked: int | None = None
        try:
            with contextlib.suppress(OSError):
                await conn.open()
            while not self.stop.is_set():
                if not self.target.live.is_set():
                    # Not live yet: the reload answers 404 at once; ask now and then.
                    await self._attempt(conn, stats, self._playlist_request())
                    await self._sleep(self._rng.uniform(1.0, 3.0))
                    continue
                msn = self.target.next_msn or 0
                if asked is not None and asked + 1 > msn:
                    msn = asked + 1
                path = f"/live/{self.target.space_id}/audio.m3u8?_HLS_msn={msn}"
                if await self._attempt(conn, stats, self._get(path)) == 200:
                    asked = msn
                else:
                    asked = None  # refused or too far ahead: follow the scout again
                    await self._sleep(self._rng.uniform(BACKOFF_S, 2 * BACKOFF_S))
        finally:
            conn.close()

    async def _slowloris(self, index: int) -> None:
        """Trickle one request's headers a byte at a time and never finish them."""
        stats = self._stats("slowloris")
        head = (
            f"GET /live/{self.target.space_id}/audio.m3u8 HTTP/1.1\r\nHost: {self.host}\r\n"
            "X-Trickle: " + "a" * 4000
        ).encode()
        while not self.stop.is_set():
            conn = Connection(self.target, self._source(index), stats)
            try:
                await conn.open()
            except OSError as e:
                stats.errors[type(e).__name__] += 1
                await self._sleep(BACKOFF_S)
                continue
            assert conn.reader is not None and conn.writer is not None
            stats.sent += 1
            await self._trickle(conn, head, stats)
            conn.close()

    async def _trickle(self, conn: Connection, head: bytes, stats: KindStats) -> None:
        assert conn.reader is not None and conn.writer is not None
        interval = self.plan.slowloris_interval_s
        await self._sleep(self._rng.uniform(0, interval))
        for i in range(len(head)):
            if self.stop.is_set():
                return
            try:
                conn.writer.write(head[i : i + 1])
                await conn.writer.drain()
                # Anything read, or the end of the stream, means the server gave up on us.
                data = await asyncio.wait_for(conn.reader.read(1024), interval)
            except TimeoutError:
                continue
            except OSError as e:
                stats.errors[type(e).__name__] += 1
                data = b""
            stats.closed_by_server += 1
            if data[:12].startswith(b"HTTP/1."):
                stats.statuses[int(data[9:12])] += 1
            await self._sleep(BACKOFF_S)
            return

    async def _scout(self) -> None:
        """Learn the segment in progress from the playlist's preload hint."""
        stats = self._stats("scout")
        conn = Connection(self.target, "127.0.0.1", stats)
        try:
            while not self.stop.is_set():
                try:
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        status, body = await conn.request(self._playlist_request())
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    conn.close()
                    status, body = 0, b""
                if status == 200 and (m := _HINT.search(body)):
                    self.target.next_msn, self.target.next_part = int(m[1]), int(m[2])
                    self.target.live.set()
                await self._sleep(0.25)
        finally:
            conn.close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    # -- running ----------------------------------------------------------------------------

    def _workers(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        p = self.plan
        n = p.connections_per_kind
        out: list[Callable[[], Coroutine[Any, Any, None]]] = [self._scout]
        paced = (
            ("playlist", p.playlist_rate, self._playlist_request, n),
            ("part", p.part_rate, self._part_request, n),
            ("session", p.session_rate, self._session_request, n),
            ("whip", p.whip_rate, self._whip_request, max(1, n // 2)),
            ("whip_idle", p.whip_idle_rate, self._whip_idle_request, 1),
        )
        for kind, rate, make, count in paced:
            if rate > 0:
                out += [_bind(self._paced, kind, i, rate / count, make) for i in range(count)]
        out += [_bind(self._held, i) for i in range(p.held)]
        out += [_bind(self._slowloris, i) for i in range(p.slowloris)]
        return out

    async def run(
        self, commands: asyncio.StreamReader | None, report: Callable[[str], None]
    ) -> dict[str, Any]:
        self.started_at = time.time()
        tasks: list[asyncio.Task[None]] = []
        listener = asyncio.create_task(self._listen(commands)) if commands else None
        for i, worker in enumerate(self._workers()):
            tasks.append(asyncio.create_task(worker()))
            if i % 200 == 199:
                await asyncio.sleep(0.02)  # ramp: the kernel's accept queue is finite
        report(json.dumps({"event": "ready", "at": time.time(), "workers": len(tasks)}))
        await self._sleep(max(0.0, self.started_at + self.plan.seconds - time.time()))
        self.stop.set()
        self.stop_signal_at = time.time()
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.stopped_at = time.time()
        if listener is not None:
            listener.cancel()
        return self.summary()

    async def _listen(self, commands: asyncio.StreamReader) -> None:
        while line := await commands.readline():
            message = json.loads(line)
            if message.get("stop"):
                break
            self.target.point(message["space_id"], message["speaker_token"])
        self.stop.set()

    def summary(self) -> dict[str, Any]:
        seconds = self.stop_signal_at - self.started_at
        return {
            "event": "done",
            "started_at": self.started_at,
            "stop_signal_at": self.stop_signal_at,
            "stopped_at": self.stopped_at,
            "seconds": round(seconds, 2),
            "cpu_s": round(time.process_time(), 2),
            "plan": {k: getattr(self.plan, k) for k in self.plan.__dataclass_fields__},
            "kinds": {k: s.summary(seconds) for k, s in sorted(self.stats.items())},
        }


def _bind(
    fn: Callable[..., Coroutine[Any, Any, None]], *args: Any
) -> Callable[[], Coroutine[Any, Any, None]]:
    return lambda: fn(*args)


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def fit_to_limit(plan: Plan, limit: int) -> Plan:
    """Leave room for the paced pools and a margin under ``limit`` open files."""
    from dataclasses import replace

    room = limit - 6 * plan.connections_per_kind - 100
    held = min(plan.held, max(0, room - plan.slowloris))
    return replace(plan, held=held, slowloris=min(plan.slowloris, max(0, room - held)))


def parse_args(argv: list[str]) -> tuple[str, Plan]:
    parser = argparse.ArgumentParser(prog="python -m tests.support.flood", description=__doc__)
    parser.add_argument("--base", required=True, help="server URL, e.g. http://127.0.0.1:8080")
    defaults = Plan()
    for name in defaults.__dataclass_fields__:
        value = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    ns = vars(parser.parse_args(argv))
    base = ns.pop("base")
    return base, Plan(**ns)


async def _main(argv: list[str]) -> None:
    base, plan = parse_args(argv)
    limit = raise_open_file_limit()
    plan = fit_to_limit(plan, limit)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)

    def report(line: str) -> None:
        print(line, flush=True)

    flood = Flood(base, plan)
    result = await flood.run(commands, report)
    result["open_file_limit"] = limit
    report(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1:]))
