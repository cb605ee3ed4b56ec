"""Bad input through the public HTTP and WHIP interfaces, while a space is live.

Every refusal must carry the right status and a JSON body {"error", "status", "detail"}
whose detail says what was wrong; none may be a 500, and the live space must not notice.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiortc import RTCConfiguration, RTCPeerConnection

from majlis.http import admission, api, audience, ops, pages, trust
from majlis.http import live as live_routes
from majlis.http import whip as whip_routes
from majlis.ingest.ice import configure_ice
from majlis.rooms.tokens import Role, TokenSigner
from tests.support.audio import decode_mp4, tone_power
from tests.support.player import Player
from tests.support.server import RunningServer, majlis_server
from tests.support.whip import Publisher, ToneTrack, publish

pytestmark = pytest.mark.asyncio(loop_scope="module")

TONE = 1000.0
SDP = "application/sdp"
JSON = "application/json"


@dataclass
class Live:
    server: RunningServer
    http: aiohttp.ClientSession
    space: dict[str, str]  # live, one tone publisher
    other: dict[str, str]  # another space (scheduled)
    ended: dict[str, str]  # a space that has ended
    offer: str  # a valid aiortc offer, never answered
    publisher: Publisher
    secrets: list[str]  # must never appear in a response

    def path(self, template: str) -> str:
        session = self.publisher.location.rsplit("/", 1)[1]
        return template.format(
            live=self.space["id"], other=self.other["id"], ended=self.ended["id"], session=session
        )

    def authorization(self, name: str) -> str:
        return "Basic YTpi" if name == "basic" else f"Bearer {self.token(name)}"

    def token(self, name: str) -> str:
        """A token by what it is; anything unknown is sent as it is written."""
        secret = (self.server.data / "token_secret").read_bytes().strip()
        signer = TokenSigner(secret)
        match name.split(":"):
            case ["admin"]:
                return self.server.admin_token
            case [which, role] if which in ("live", "other", "ended"):
                return getattr(self, "space" if which == "live" else which)[f"{role}_token"]
            case ["expired"]:
                # Signed with the server's own secret (from its data folder), long expired.
                return signer.issue(self.space["id"], Role.SPEAKER, 1.0)
            case ["tampered"]:
                # Another space's claims under this space's signature.
                return (
                    self.other["speaker_token"].split(".")[0]
                    + "."
                    + self.token("live:speaker").split(".")[1]
                )
        return name


async def _make_offer() -> str:
    configure_ice(("127.0.0.1",))
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


async def _wait_segments(http: aiohttp.ClientSession, state_url: str, count: int) -> None:
    deadline = time.monotonic() + 15
    last = None
    while time.monotonic() < deadline:
        async with http.get(state_url) as resp:
            last = await resp.json()
        if last["segments"] >= count and last["stage"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"space did not go live: {last}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    data = tmp_path_factory.mktemp("bad-input") / "data"
    with majlis_server(data) as server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            space = server.create_space("Live")
            other = server.create_space("Other")
            ended = server.create_space("Ended")
            admin = {"Authorization": f"Bearer {server.admin_token}"}
            async with http.post(f"{server.base}/api/spaces/{ended['id']}/end", headers=admin) as r:
                assert r.status == 200, await r.text()
            pub = await publish(
                http, server.base, space["whip_url"], space["speaker_token"], ToneTrack(TONE)
            )
            try:
                await _wait_segments(http, server.base + space["state_url"], 2)
                secrets = [server.admin_token, (data / "token_secret").read_text().strip()]
                yield Live(server, http, space, other, ended, await _make_offer(), pub, secrets)
            finally:
                await pub.pc.close()


Body = bytes | Callable[[str], bytes] | None  # a callable gets the valid offer to spoil


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str  # {live}, {other}, {ended}, {session} are filled in
    status: int
    detail: str  # a fragment the detail must contain, case-insensitive
    token: str | None = None  # see Live.token
    body: Body = None
    ctype: str | None = None

    def __str__(self) -> str:
        return self.name


def create(
    name: str,
    status: int,
    detail: str,
    body: bytes,
    token: str | None = "admin",
    ctype: str | None = JSON,
) -> Case:
    return Case(name, "POST", "/api/spaces", status, detail, token, body, ctype)


def whip(
    name: str,
    status: int,
    detail: str,
    body: Body,
    token: str | None = "live:speaker",
    ctype: str = SDP,
) -> Case:
    return Case(name, "POST", "/whip/{live}", status, detail, token, body, ctype)


def _title(value: object) -> bytes:
    return json.dumps({"title": value}).encode()


def _drop(prefix: str) -> Callable[[str], bytes]:
    return lambda offer: "\r\n".join(
        ln for ln in offer.split("\r\n") if not ln.startswith(prefix)
    ).encode()


def _swap(old: str, new: str) -> Callable[[str], bytes]:
    def spoil(offer: str) -> bytes:
        assert old in offer, old
        return offer.replace(old, new).encode()

    return spoil


def _add(lines: str) -> Callable[[str], bytes]:
    return lambda offer: (offer + lines).encode()


def _offer(offer: str) -> bytes:
    return offer.encode()


VIDEO_ONLY = (
    b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    b"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 H264/90000\r\n"
)
REJECTED = "sdp offer rejected"  # aiortc's own parser said no; the reason follows

CASES = [
    create("create/no-auth", 401, "missing authorization", _title("x"), token=None),
    create("create/wrong-token", 403, "admin token", _title("x"), token="not-the-admin"),
    create("create/speaker-token", 403, "admin token", _title("x"), token="live:speaker"),
    create("create/basic-scheme", 401, "bearer", _title("x"), token="basic"),
    create("create/not-json", 400, "not valid json", b"title=x"),
    create("create/not-utf8", 400, "not valid json", b'{"title": "\xff\xfe"}'),
    create("create/json-array", 400, "json object", b'["title"]'),
    create("create/missing-title", 400, "'title' is required", b"{}"),
    create("create/title-not-string", 400, "must be a string", _title(42)),
    create("create/empty-title", 400, "must not be empty", _title("   ")),
    create("create/title-201-chars", 400, "longer than 200", _title("a" * 201)),
    create("create/text-plain", 415, "application/json", _title("x"), ctype="text/plain"),
    create("create/no-content-type", 415, "application/json", _title("x"), ctype=None),
    create("create/body-over-limit", 413, "limit is 16384", _title("a" * 20_000)),
    create("create/body-over-server-limit", 413, "limit", b" " * 400_000),
    whip("whip/no-token", 401, "missing authorization", _offer, token=None),
    whip("whip/other-space-token", 403, "another space", _offer, token="other:speaker"),
    whip("whip/admin-token", 401, "token is malformed", _offer, token="admin"),
    whip("whip/garbage-token", 401, "token is malformed", _offer, token="garbage"),
    whip("whip/tampered-token", 401, "signature is invalid", _offer, token="tampered"),
    whip("whip/expired-token", 401, "expired", _offer, token="expired"),
    whip("whip/text-plain", 415, "application/sdp", _offer, ctype="text/plain"),
    whip("whip/not-sdp", 400, "must start with 'v=0'", b"hello, this is not SDP"),
    whip("whip/not-utf8", 400, "not utf-8", b"v=0\r\nm=audio \xff\xfe"),
    whip("whip/no-mline", 400, "no m= line", b"v=0\r\ns=-\r\n"),
    whip("whip/no-audio-mline", 400, "no audio m= line", VIDEO_ONLY),
    whip("whip/mline-garbage", 400, "not a valid m= line", _swap("m=audio ", "m=audio port ")),
    whip("whip/payload-type-256", 400, "out of range", _swap("a=rtpmap:96 ", "a=rtpmap:256 ")),
    whip("whip/audio-without-ice", 400, "ice username", _drop("a=ice-ufrag:")),
    whip("whip/rtpmap-truncated", 400, REJECTED, _swap("opus/48000/2", "opus")),
    whip("whip/rtpmap-clock-word", 400, REJECTED, _swap("opus/48000/2", "opus/fast/2")),
    whip("whip/no-dtls-setup", 400, REJECTED, _drop("a=setup:")),
    whip("whip/ssrc-word", 400, REJECTED, _add("a=ssrc:abc cname:x\r\n")),
    whip(
        "whip/candidate-port-word", 400, REJECTED, _add("a=candidate:1 1 UDP 1 ::1 x typ host\r\n")
    ),
    # Without a fingerprint DTLS can never start: refuse now, not after the connect grace.
    whip("whip/no-dtls-fingerprint", 400, "fingerprint", _drop("a=fingerprint:")),
    whip("whip/sdp-over-limit", 413, "limit is 65536", _add("a=x-pad:" + "x" * 70_000 + "\r\n")),
    Case("whip/ended-space", "POST", "/whip/{ended}", 409, "ended", "ended:speaker", _offer, SDP),
    Case(
        "end/speaker-token",
        "POST",
        "/api/spaces/{live}/end",
        403,
        "needs a host token",
        "live:speaker",
    ),
    Case("end/no-token", "POST", "/api/spaces/{live}/end", 401, "missing authorization"),
    Case("end/other-host", "POST", "/api/spaces/{live}/end", 403, "another space", "other:host"),
    Case("list/no-token", "GET", "/api/spaces", 401, "missing authorization"),
    Case("list/host-token", "GET", "/api/spaces", 403, "admin token", "live:host"),
    Case(
        "whip-delete/unknown-session",
        "DELETE",
        "/whip/{live}/nope",
        404,
        "no such whip session",
        "live:speaker",
    ),
    Case("whip-delete/no-token", "DELETE", "/whip/{live}/{session}", 401, "missing authorization"),
    Case(
        "whip-delete/other-token",
        "DELETE",
        "/whip/{live}/{session}",
        403,
        "another space",
        "other:speaker",
    ),
    Case(
        "whip-patch/unknown-session",
        "PATCH",
        "/whip/{live}/nope",
        404,
        "no such whip session",
        "live:speaker",
    ),
    Case("segment/unknown", "GET", "/live/{live}/s/99999.m4s", 404, "segment 99999 does not"),
    Case("segment/30-digits", "GET", "/live/{live}/s/" + "9" * 30 + ".m4s", 404, "no such segm"),
    Case("segment/word", "GET", "/live/{live}/s/abc.m4s", 404, "not found"),
    # \d in a route matches any Unicode digit: "٠" must not alias segment 0.
    Case("segment/arabic-indic-zero", "GET", "/live/{live}/s/٠.m4s", 404, "no such segment"),
    Case("part/arabic-indic-zero", "GET", "/live/{live}/p/٠.٠.m4s", 404, "no such part"),
    Case("part/unknown-segment", "GET", "/live/{live}/p/99999.0.m4s", 404, "part 99999.0 does"),
    Case("part/index-past-segment", "GET", "/live/{live}/p/0.5.m4s", 404, "part 0.5 does not"),
    Case("part/30-digits", "GET", "/live/{live}/p/0." + "9" * 30 + ".m4s", 404, "no such part"),
    Case("init/ended-never-started", "GET", "/live/{ended}/init.mp4", 404, "has not started"),
    Case("unknown-route", "GET", "/no/such/route", 404, "not found"),
]

# Every route that names a space answers 404 for one that does not exist, before it looks at
# tokens or bodies (the CORS preflight excepted: it reveals nothing and needs no token).
UNKNOWN_SPACE_ROUTES = [
    ("GET", "/api/spaces/{id}"),
    ("POST", "/api/spaces/{id}/end"),
    ("POST", "/whip/{id}"),
    ("PATCH", "/whip/{id}/session"),
    ("DELETE", "/whip/{id}/session"),
    ("GET", "/live/{id}/index.m3u8"),
    ("GET", "/live/{id}/audio.m3u8"),
    ("GET", "/live/{id}/audio.m3u8?_HLS_msn=1&_HLS_part=0"),
    ("GET", "/live/{id}/init.mp4"),
    ("GET", "/live/{id}/s/0.m4s"),
    ("GET", "/live/{id}/p/0.0.m4s"),
    ("GET", "/live/{id}/state.json"),
    ("GET", "/s/{id}"),
]
for _method, _route in UNKNOWN_SPACE_ROUTES:
    for _sid in ("zzzzzzzzzzzz", "not*valid!id", "x" * 200):
        _path = _route.replace("{id}", _sid)
        _body = _offer if _route == "/whip/{id}" else None
        _name = f"unknown-space/{_method} {_route} {_sid[:12]}"
        CASES.append(Case(_name, _method, _path, 404, "no space with id", "live:host", _body, SDP))


def _check_error_body(status: int, text: str, case: Case) -> None:
    try:
        body = json.loads(text)
    except ValueError:
        raise AssertionError(f"{case}: body is not JSON: {text[:200]!r}") from None
    assert set(body) == {"error", "status", "detail"}, f"{case}: {body}"
    assert body["status"] == status, body
    assert isinstance(body["error"], str) and body["error"], body
    assert case.detail.lower() in body["detail"].lower(), f"{case}: detail {body['detail']!r}"


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_refused_with_a_reason(live: Live, case: Case) -> None:
    headers = {"Content-Type": case.ctype} if case.ctype else {}
    if case.token is not None:
        headers["Authorization"] = live.authorization(case.token)
    body = case.body(live.offer) if callable(case.body) else case.body
    url = live.server.base + live.path(case.path)
    async with live.http.request(case.method, url, headers=headers, data=body) as resp:
        text = await resp.text(errors="replace")
        assert resp.status == case.status, f"{case}: {resp.status} {text[:300]}"
        assert resp.content_type == JSON, resp.content_type
    _check_error_body(resp.status, text, case)
    for secret in live.secrets:
        assert secret not in text


async def test_oversized_body_without_length_is_cut_off(live: Live) -> None:
    """A chunked body (no Content-Length) is still read only up to the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'"}'

    headers = {"Content-Type": JSON, "Authorization": f"Bearer {live.server.admin_token}"}
    url = live.server.base + "/api/spaces"
    async with live.http.post(url, headers=headers, data=chunks()) as resp:
        text = await resp.text()
        assert resp.status == 413, text
    _check_error_body(413, text, create("chunked", 413, "larger than the limit", b""))


async def _raw(base: str, request_head: str) -> tuple[int, bytes]:
    """Send bytes exactly as written: HTTP clients normalise `..` and refuse long lines."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(request_head.encode("latin-1"))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


TRAVERSALS = [
    "/live/{live}/../../admin_token",
    "/live/{live}/s/../../../admin_token",
    "/live/{live}/s/..%2F..%2F..%2Fadmin_token",
    "/live/{live}/s/%2e%2e%2f%2e%2e%2f%2e%2e%2ftoken_secret",
    "/live/{live}/p/0.0.m4s/../../../../majlis.sqlite3",
    "/live/{live}/s/0.m4s%00../../../admin_token",
    "/live/..%2F..%2Fadmin_token/init.mp4",
    "/live/{live}%2F..%2F..%2F..%2Fadmin_token/init.mp4",
    "/live/..%2f{live}/s/0.m4s",
    "/live/%2e%2e/s/0.m4s",
    "/static/../../../../../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2Fapp.py",
    "/static/%2e%2e/%2e%2e/app.py",
    "/static/..\\..\\app.py",
]


@pytest.mark.parametrize("template", TRAVERSALS)
async def test_path_traversal_finds_nothing(live: Live, template: str) -> None:
    target = live.path(template)
    status, body = await _raw(
        live.server.base, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status in (400, 404), (target, status, body[:200])
    for secret in live.secrets:
        assert secret.encode() not in body
    assert b"root:" not in body and b"SQLite" not in body and b"import" not in body


@pytest.mark.parametrize(
    "head",
    [
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 20_000 + "\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n" + "".join(f"X-{i}: v\r\n" for i in range(500)),
        "GET /live/" + "a" * 20_000 + "/audio.m3u8 HTTP/1.1\r\nHost: x\r\n",
        "GET /healthz HTTP/9.9\r\nHost: x\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n",
    ],
    ids=["huge-header", "many-headers", "huge-request-line", "bad-version", "negative-length"],
)
async def test_malformed_http_gets_4xx_and_server_lives(live: Live, head: str) -> None:
    status, _ = await _raw(live.server.base, head + "Connection: close\r\n\r\n")
    assert 400 <= status < 500, status
    async with live.http.get(live.server.base + "/healthz") as resp:
        assert resp.status == 200


async def test_openapi_document_names_exactly_the_routes(live: Live) -> None:
    """/static/openapi.json describes what exists: every route, nothing more."""
    async with live.http.get(live.server.base + "/static/openapi.json") as resp:
        assert resp.status == 200
        document = json.loads(await resp.read())
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    tables = (api.routes, audience.routes, live_routes.routes, ops.routes, pages.routes)
    tables += (trust.routes, admission.routes)
    served = {
        (route.method, re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path))
        for table in (*tables, whip_routes.routes)
        for route in table
    }
    # The CORS middleware answers OPTIONS on every /api/ path.
    served |= {("OPTIONS", path) for method, path in served if path.startswith("/api/")}
    assert documented == served
    for (method, path), operation in (
        ((m.upper(), p), op)
        for p, item in document["paths"].items()
        for m, op in item.items()
        if m != "parameters"
    ):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


async def test_live_space_undisturbed(live: Live) -> None:
    """Runs last: after every refusal above, the space is live and its tone is heard."""
    assert live.server.process.poll() is None, live.server.log()
    async with live.http.get(live.server.base + live.space["state_url"]) as resp:
        state = await resp.json()
    assert state["status"] == "live", state
    assert [s["name"] for s in state["stage"]] == ["speaker"], state
    assert state["stage"][0]["talking"], state
    player = Player(live.http, live.server.base + live.space["playlist_url"])
    await player.run(2.5)
    assert len(player.parts) >= 8, f"only {len(player.parts)} parts in 2.5 s"
    power = tone_power(decode_mp4(player.media()), TONE)
    assert power > 0.8, f"the {TONE:.0f} Hz tone is no longer heard clearly: {power:.3f}"
    async with live.http.get(live.server.base + live.space["state_url"]) as resp:
        assert (await resp.json())["segments"] > state["segments"]
    log = live.server.log()
    assert "unhandled error" not in log, log
    assert "Task exception was never retrieved" not in log, log
