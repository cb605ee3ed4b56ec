"""The HTTP edge's limits through a real `majlis serve`: every refusal is immediate, says why
in the JSON error body, and leaves the server serving everyone else.

Limits are set small on the command line so each one is reached in well under a second;
the defaults and why they are what they are: docs/security.md.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from tests.support.audio import decode_mp4, tone_power
from tests.support.server import RunningServer, majlis_server, stop
from tests.support.whip import ToneTrack, publish

JSON = "application/json"
_SEGMENT = re.compile(r"^s/(\d+)\.m4s$", re.M)
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(p/(?:\d+/)?(\d+)\.(\d+)\.m4s)"')
HOLD_LIMIT_S = 3.0  # three target durations of 1 s


@dataclass
class Raw:
    """A response read off a raw socket, and when the server closed the connection."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed_after: float  # seconds from connecting to EOF

    def error(self) -> dict[str, object]:
        assert self.headers.get("content-type", "").startswith(JSON), self.headers
        body: dict[str, object] = json.loads(self.body)
        assert body["status"] == self.status and set(body) == {"error", "status", "detail"}
        return body


def _parse(data: bytes, closed_after: float) -> Raw:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1]) if lines[0] else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return Raw(status, headers, body, closed_after)


async def _open(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(base)
    return await asyncio.open_connection(url.hostname, url.port)


async def raw(base: str, data: bytes, *, trickle: float = 0.0, wait: float = 10.0) -> Raw:
    """Send `data` (all at once, or a byte every `trickle` seconds) and read to EOF."""
    start = time.perf_counter()
    reader, writer = await _open(base)
    got = b""
    try:
        if not trickle:
            writer.write(data)
        for i in range(len(data) if trickle else 0):
            writer.write(data[i : i + 1])
            try:
                got = await asyncio.wait_for(reader.read(65536), trickle)
                break  # the server answered (or closed) before the request was whole
            except TimeoutError:
                continue
        got += await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()
    return _parse(got, time.perf_counter() - start)


async def on_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes]:
    """One keep-alive request on an open connection: (status, body)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    reply = _parse(head, 0.0)
    body = await asyncio.wait_for(reader.readexactly(int(reply.headers["content-length"])), 10)
    return reply.status, body


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode()


async def _fetch(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes, float]:
    start = time.perf_counter()
    async with http.get(url, headers=headers or {}) as resp:
        body = await resp.read()
    return resp.status, dict(resp.headers), body, time.perf_counter() - start


def _error(status: int, headers: dict[str, str], body: bytes, expected: int, code: str) -> str:
    assert status == expected, (status, body[:300])
    assert headers["Content-Type"].startswith(JSON), headers
    parsed = json.loads(body)
    assert parsed["status"] == expected and parsed["error"] == code, parsed
    detail: str = parsed["detail"]
    return detail


# -- sizes ---------------------------------------------------------------------------------


async def test_sizes_get_json_refusals_and_no_traceback(tmp_path: Path) -> None:
    with majlis_server(tmp_path / "data", "--max-query-bytes", "256") as server:
        space = server.create_space("Sizes")
        ready = await raw(server.base, _get("/readyz"))
        assert ready.status == 200 and json.loads(ready.body) == {"status": "ready"}, ready
        cases = [
            (_get("/healthz", "X-Big: " + "a" * 9000 + "\r\n"), 431, "headers_too_large"),
            (_get("/healthz", "".join(f"X-{i}: v\r\n" for i in range(80))), 431,
             "headers_too_large"),
            (_get("/live/" + "a" * 5000 + "/audio.m3u8"), 414, "uri_too_long"),
            (_get(f"/live/{space['id']}/audio.m3u8?x=" + "a" * 300), 414, "uri_too_long"),
            (_get("/healthz").replace(b"HTTP/1.1", b"HTTP/9.9"), 400, "bad_request"),
        ]  # fmt: skip
        for request, status, code in cases:
            reply = await raw(server.base, request)
            assert reply.status == status, (request[:80], reply)
            assert reply.error()["error"] == code
        print("431/414/400 answered as JSON:", [c[1] for c in cases])

        headers = {"Authorization": f"Bearer {server.admin_token}", "Content-Type": JSON}
        async with aiohttp.ClientSession() as http:
            big = b'{"title": "' + b"a" * 300_000 + b'"}'
            async with http.post(server.base + "/api/spaces", data=big, headers=headers) as r:
                detail = _error(r.status, dict(r.headers), await r.read(), 413,
                                "payload_too_large")  # fmt: skip
            assert "limit" in detail
            offer = b"v=0\r\n" + b"a=x\r\n" * 20_000  # past the 64 KiB bound on SDP
            whip = {"Authorization": f"Bearer {space['speaker_token']}",
                    "Content-Type": "application/sdp"}  # fmt: skip
            async with http.post(server.base + space["whip_url"], data=offer, headers=whip) as r:
                _error(r.status, dict(r.headers), await r.read(), 413, "payload_too_large")
            async with http.get(server.base + "/healthz") as r:
                assert r.status == 200
        log = server.log()
    assert "Traceback" not in log and "Error handling request" not in log, log


async def test_live_routes_take_only_numbers_and_bad_hls_params_are_400(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = server.create_space("Names")
    base = f"{server.base}/live/{space['id']}"
    for name in ("s/abc.m4s", "s/1e3.m4s", "s/%D9%A3.m4s", "p/0.x.m4s", "p/0.0.0.m4s",
                 "s/..%2F..%2Fadmin_token", "p/-1.0.m4s", "s/0.m4s.bak"):  # fmt: skip
        status, headers, body, _ = await _fetch(http, f"{base}/{name}")
        _error(status, headers, body, 404, "not_found")
    for query, fragment in (
        ("_HLS_msn=abc", "_HLS_msn must be a non-negative decimal integer"),
        ("_HLS_part=1", "_HLS_part requires _HLS_msn"),
        ("_HLS_skip=NO", "_HLS_skip must be YES or v2"),
        ("_HLS_msn=1&_HLS_part=%C2%B2", "_HLS_part must be a non-negative"),
    ):
        status, headers, body, held = await _fetch(http, f"{base}/audio.m3u8?{query}")
        assert fragment in _error(status, headers, body, 400, "bad_request")
        assert held < 1.0, "a malformed request is refused at once, never held"


# -- rates ---------------------------------------------------------------------------------


async def test_rate_limits_answer_429_per_lane(tmp_path: Path) -> None:
    flags = (
        # Slow refills (a token per 2 s, per 5 s) so a loaded machine's slowness cannot
        # refill a bucket between two requests of the burst.
        "--listener-rate", "0.5/6", "--api-rate", "0.2/3", "--listener-prefix-rate", "100/100",
        "--limit-exempt", "none",  # the test's own address, loopback, is exempt by default
    )  # fmt: skip
    with majlis_server(tmp_path / "data", *flags) as server:
        space = server.create_space("Rates")  # one API request of the three
        async with aiohttp.ClientSession() as http:
            url = f"{server.base}/live/{space['id']}/index.m3u8"
            replies = [await _fetch(http, url) for _ in range(10)]
            statuses = [r[0] for r in replies]
            assert statuses[:6] == [200] * 6 and 429 in statuses[6:], statuses
            status, headers, body, took = next(r for r in replies if r[0] == 429)
            assert "too many requests" in _error(status, headers, body, 429, "too_many_requests")
            assert re.fullmatch(r"[1-9]\d*", headers["Retry-After"]), headers["Retry-After"]
            assert took < 0.5, "a refusal is immediate"
            # The API lane has its own buckets; probes have none.
            api = f"{server.base}/api/spaces/{space['id']}"
            assert [(await _fetch(http, api))[0] for _ in range(3)] == [200, 200, 429]
            assert {(await _fetch(http, server.base + "/healthz"))[0] for _ in range(20)} == {200}
            # After Retry-After the listener is served again.
            await asyncio.sleep(int(headers["Retry-After"]))
            assert (await _fetch(http, url))[0] == 200


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(tmp_path: Path) -> None:
    flags = (
        "--listener-rate",
        "0.2/2",
        "--listener-prefix-rate",
        "100/100",
        "--limit-exempt",
        "none",
    )
    async with aiohttp.ClientSession() as http:
        with majlis_server(tmp_path / "a", *flags) as untrusted:
            space = untrusted.create_space("XFF ignored")
            url = f"{untrusted.base}/live/{space['id']}/index.m3u8"
            # Each request claims another address: without a trusted proxy, that is ignored.
            statuses = [
                (await _fetch(http, url, {"X-Forwarded-For": f"198.51.100.{i}"}))[0]
                for i in range(4)
            ]
            assert statuses == [200, 200, 429, 429], statuses
        with majlis_server(tmp_path / "b", *flags, "--trusted-proxy", "127.0.0.1/32") as edge:
            space = edge.create_space("Behind an edge")
            page = f"{edge.base}/s/{space['id']}"
            a = {"X-Forwarded-For": "203.0.113.9, 198.51.100.1"}  # rightmost untrusted counts
            b = {"X-Forwarded-For": "198.51.100.2"}
            first = [(await _fetch(http, page, a))[0] for _ in range(3)]
            second = [(await _fetch(http, page, b))[0] for _ in range(2)]
            assert first == [200, 200, 429] and second == [200, 200], (first, second)
            # What an edge caches it fetches once for all its listeners: never limited as
            # the one listener it names.
            playlist = f"{edge.base}/live/{space['id']}/index.m3u8"
            fills = [(await _fetch(http, playlist, a))[0] for _ in range(5)]
            assert fills == [200] * 5, fills
            async with http.get(edge.base + "/metrics") as resp:
                metrics = await resp.text()
            assert re.search(r'refusals_total\{reason="listener_rate"\} [1-9]', metrics), metrics


# -- held requests -------------------------------------------------------------------------


@asynccontextmanager
async def stalled_space(tmp_path: Path, *flags: str) -> AsyncIterator[tuple[RunningServer, str]]:
    """A live space restored after a restart: its edge never moves until someone publishes,
    so every blocking request is held for exactly the hold limit."""
    data = tmp_path / "data"
    with majlis_server(data) as first:
        space = first.create_space("Stalled")
        async with aiohttp.ClientSession() as http:
            pub = await publish(
                http, first.base, space["whip_url"], space["host_token"], ToneTrack(300.0)
            )
            deadline = time.monotonic() + 15
            url = first.base + space["playlist_url"]
            while len(_SEGMENT.findall((await _fetch(http, url))[2].decode())) < 1:
                assert time.monotonic() < deadline, "no segment in 15 s"
                await asyncio.sleep(0.1)
            await pub.pc.close()
        assert stop(first.process) == 0, first.log()
    with majlis_server(data, *flags) as second:
        yield second, second.base + space["playlist_url"]


async def test_held_reload_caps_refuse_at_once_and_holds_time_out(tmp_path: Path) -> None:
    flags = ("--max-held-per-address", "2", "--max-held", "3", "--trusted-proxy", "127.0.0.1")
    async with AsyncExitStack() as stack:
        server, playlist = await stack.enter_async_context(stalled_space(tmp_path, *flags))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        text = (await _fetch(http, playlist))[2].decode()
        hint = _HINT.search(text)
        assert hint is not None, text
        msn, part = int(hint[2]), int(hint[3])
        blocking = f"{playlist}?_HLS_msn={msn}&_HLS_part={part}"
        hinted = playlist.rsplit("/", 1)[0] + "/" + hint[1]
        a = {"X-Forwarded-For": "198.51.100.1"}
        b = {"X-Forwarded-For": "198.51.100.2"}
        # A holds two (a blocking reload and the hinted part: both count), B one: the total.
        held = [
            asyncio.create_task(_fetch(http, blocking, a)),
            asyncio.create_task(_fetch(http, hinted, a)),
            asyncio.create_task(_fetch(http, blocking, b)),
        ]
        await _until_held(http, server.base, 3)
        status, headers, body, refused = await _fetch(http, blocking, a)
        assert "already held" in _error(status, headers, body, 429, "too_many_requests")
        assert refused < 0.5 and int(headers["Retry-After"]) >= 1
        status, headers, body, took = await _fetch(http, hinted, b)
        _error(status, headers, body, 503, "unavailable")
        assert took < 0.5 and int(headers["Retry-After"]) >= 1, took
        # A request that needs no hold is never counted: the playlist itself, skip=YES too.
        status, _, body, _ = await _fetch(http, f"{playlist}?_HLS_skip=YES", a)
        assert status == 200 and b"#EXT-X-SKIP" not in body
        (s1, h1, b1, t1), (s2, h2, b2, _), (s3, h3, b3, t3) = await asyncio.gather(*held)
        for status, headers, body, took in ((s1, h1, b1, t1), (s3, h3, b3, t3)):
            assert "did not appear in time" in _error(status, headers, body, 503, "unavailable")
            assert HOLD_LIMIT_S - 0.1 < took < HOLD_LIMIT_S + 1.5, took
        _error(s2, h2, b2, 404, "not_found")  # the hinted part never came
        print(f"held caps: 429 in {refused:.3f} s; timed-out holds answered after {t1:.2f} s")
        await _until_held(http, server.base, 0)
        assert server.log().count("Traceback") == 0, server.log()


async def _until_held(http: aiohttp.ClientSession, base: str, count: int) -> None:
    deadline = time.monotonic() + 5
    last = ""
    while time.monotonic() < deadline:
        async with http.get(base + "/metrics") as resp:
            metrics = await resp.text()
        last = re.search(r"^majlis_guard_held_requests (\d+)", metrics, re.M)[1]  # type: ignore[index]
        if int(last) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{last} requests held, expected {count}")


# -- slow clients --------------------------------------------------------------------------


async def test_slow_clients_are_cut(tmp_path: Path) -> None:
    flags = ("--header-timeout", "1", "--idle-timeout", "2", "--min-body-rate", "2000")
    with majlis_server(tmp_path / "data", *flags) as server:
        # A head trickled a byte every 0.2 s: cut with a 408 about 1 s after connecting.
        slowloris = await raw(server.base, _get("/healthz", "X-Pad: " + "a" * 40 + "\r\n"),
                              trickle=0.2)  # fmt: skip
        assert slowloris.status == 408 and slowloris.error()["error"] == "request_timeout"
        assert 0.9 < slowloris.closed_after < 2.5, slowloris.closed_after
        # A connection that sends nothing at all is closed as quietly as it came.
        silent = await raw(server.base, b"")
        assert silent.status == 0 and silent.body == b"", silent
        assert 0.9 < silent.closed_after < 2.5, silent
        # A keep-alive connection idle after its answer is closed after the idle timeout.
        reader, writer = await _open(server.base)
        start = time.perf_counter()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b'"ok"}'), 5)
        assert head.startswith(b"HTTP/1.1 200"), head
        rest = await asyncio.wait_for(reader.read(), 6)
        idle = time.perf_counter() - start
        writer.close()
        assert rest == b"" and 1.8 < idle < 4.0, (rest, idle)
        # A body that trickles (10 bytes every 0.2 s of a 2000-byte body) is cut with a 408.
        body_head = (
            "POST /api/spaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {server.admin_token}\r\nContent-Length: 2000\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        reader, writer = await _open(server.base)
        writer.write(body_head)
        answer = b""
        reset = False
        try:
            for _ in range(60):
                writer.write(b"{" if not answer else b" " * 10)
                try:
                    answer += await asyncio.wait_for(reader.read(65536), 0.2)
                except TimeoutError:
                    continue
                if answer == b"" or reader.at_eof():
                    break
            answer += await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            # The server closed while this client was still sending: the kernel may answer
            # the late bytes with a reset that overtakes the 408 (no lingering close yet).
            reset = True
        writer.close()
        cut = _parse(answer, time.perf_counter() - start)
        if not reset:
            assert cut.status == 408, answer[:300]
            assert "slower than 2000 bytes per second" in str(cut.error()["detail"])
        assert cut.closed_after < 4.0, cut.closed_after
        print(
            f"slowloris cut after {slowloris.closed_after:.2f} s, silent {silent.closed_after:.2f}"
            f" s, idle keep-alive {idle:.2f} s, trickled body {cut.closed_after:.2f} s"
        )
        async with aiohttp.ClientSession() as http, http.get(server.base + "/metrics") as resp:
            metrics = await resp.text()
        for reason in ("head_timeout", "body_too_slow"):
            assert re.search(rf'refusals_total\{{reason="{reason}"\}} [1-9]', metrics), reason
        assert "Traceback" not in server.log(), server.log()


# -- connections ---------------------------------------------------------------------------


async def test_speaker_path_is_served_while_listener_connections_are_saturated(
    tmp_path: Path,
) -> None:
    pool = 20
    flags = (
        "--max-connections", str(pool), "--max-connections-per-address", str(pool),
        "--speaker-connections", "8", "--header-timeout", "30", "--idle-timeout", "60",
        "--limit-exempt", "none",
    )  # fmt: skip
    with majlis_server(tmp_path / "data", *flags) as server:
        space = server.create_space("Saturated")
        hogs = [await _open(server.base) for _ in range(pool)]  # silent, slow: held open
        try:
            async with aiohttp.ClientSession() as http:
                await _until_full(http, server.base)
                listener = await raw(server.base, _get(space["playlist_url"]))
                assert listener.status == 503, listener
                assert "listener connection limit" in str(listener.error()["detail"])
                assert listener.headers["connection"].lower() == "close"

                start = time.perf_counter()
                pub = await publish(
                    http, server.base, space["whip_url"], space["speaker_token"], ToneTrack(700.0)
                )
                whip_s = time.perf_counter() - start
                try:
                    await _until_segments(http, server.base, space["id"], 3)
                    # The pool is still full: read the recording over one of the hogs' own
                    # connections, which hold listener slots and have sent nothing yet.
                    reader, writer = hogs[0]
                    base = f"/live/{space['id']}"
                    status, init = await on_connection(reader, writer, f"{base}/init.mp4")
                    assert status == 200
                    segments = init
                    for msn in range(3):
                        status, data = await on_connection(reader, writer, f"{base}/s/{msn}.m4s")
                        assert status == 200, data[:200]
                        segments += data
                    ready = (await _fetch(http, server.base + "/readyz"))[0]
                finally:
                    await pub.pc.close()
        finally:
            for _, writer in hogs:
                writer.close()
    assert ready == 503, "the pool stayed saturated throughout"
    samples = decode_mp4(segments)
    power = tone_power(samples, 700.0)
    print(f"saturated: WHIP 201 in {whip_s:.3f} s; 700 Hz power {power:.2f} in the mix")
    assert whip_s < 5.0, f"the WHIP offer took {whip_s:.2f} s"
    assert power > 0.5, f"the speaker's tone did not reach the mix: {power:.3f}"


async def _until_full(http: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        status, _, body, _ = await _fetch(http, base + "/readyz")
        if status == 503:
            assert b"listener connections are at their limit" in body, body
            return
        assert time.monotonic() < deadline, f"/readyz still {status}: {body!r}"
        await asyncio.sleep(0.05)


async def _until_segments(http: aiohttp.ClientSession, base: str, space: str, count: int) -> None:
    """Wait for the space's segments through the API (the listener path is full)."""
    deadline = time.monotonic() + 15
    while True:
        async with http.get(f"{base}/api/spaces/{space}") as resp:
            state = await resp.json()
        if state.get("segments", 0) >= count:
            return
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.2)


async def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    flags = (
        "--max-connections", "100", "--max-connections-per-address", "3",
        "--speaker-connections", "2", "--header-timeout", "30", "--limit-exempt", "none",
    )  # fmt: skip
    with majlis_server(tmp_path / "data", *flags) as server:
        space = server.create_space("Per address")
        mine = [await _open(server.base) for _ in range(3)]  # this address's listener share
        try:
            # Past its share, the address reaches only the speaker reserve: listener URLs are
            # refused there, the API is served.
            listener = await raw(server.base, _get(space["playlist_url"]))
            assert listener.status == 503 and listener.error()["error"] == "unavailable"
            api = await raw(server.base, _get(f"/api/spaces/{space['id']}"))
            assert api.status == 200, api
            mine += [await _open(server.base) for _ in range(2)]  # the reserve, too
            refused = await raw(server.base, b"")
            assert refused.status == 503 and refused.headers["retry-after"] == "1", refused
            assert "connection limit" in str(refused.error()["detail"])
            assert refused.closed_after < 1.0, "refused at accept, not after a timeout"
        finally:
            for _, writer in mine:
                writer.close()
