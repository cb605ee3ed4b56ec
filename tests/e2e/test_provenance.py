"""Provably unedited replays: a real recording verifies; every kind of tampering is named.

One replay is recorded for the module (a tone published over WHIP for ~4.5 s, then the
space is ended); each test checks it, or a tampered copy of its folder, with the real
`majlis verify` command and asserts the exit code and the message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from majlis.trust.keys import SigningKey
from tests.support.audio import decode_mp4, tone_power
from tests.support.server import RunningServer, majlis_server, stop
from tests.support.whip import ToneTrack, publish

TALK_S = 4.5


@dataclass
class Recorded:
    server: RunningServer
    space: dict[str, Any]
    folder: Path
    live: list[tuple[dict[str, Any], str]]  # (document, Cache-Control) seen while live
    final: dict[str, Any]
    key_b64: str

    def url(self, path: str) -> str:
        return self.server.base + path


async def _get_json(http: aiohttp.ClientSession, url: str) -> tuple[dict[str, Any], str]:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json(), resp.headers["Cache-Control"]


async def _poll_segments(http: aiohttp.ClientSession, url: str, more_than: int) -> Any:
    deadline = time.monotonic() + 10
    last: Any = None
    while time.monotonic() < deadline:
        async with http.get(url) as resp:
            if resp.status == 200:
                last = (await resp.json(), resp.headers["Cache-Control"])
                if len(last[0]["segments"]) > more_than:
                    return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"provenance.json never had more than {more_than} segments: {last}")


async def _record(server: RunningServer, space: dict[str, Any]) -> list[Any]:
    doc_url = server.base + f"/live/{space['id']}/provenance.json"
    async with aiohttp.ClientSession() as http:
        async with http.get(doc_url) as resp:
            assert resp.status == 404, "nothing recorded yet"
        pub = await publish(
            http, server.base, space["whip_url"], space["host_token"], ToneTrack(440)
        )
        started = time.monotonic()
        live = [await _poll_segments(http, doc_url, 0)]
        live.append(await _poll_segments(http, doc_url, len(live[0][0]["segments"])))
        await asyncio.sleep(max(0.0, TALK_S - (time.monotonic() - started)))
        await pub.pc.close()
        headers = {"Authorization": f"Bearer {space['host_token']}"}
        async with http.post(f"{server.base}/api/spaces/{space['id']}/end", headers=headers) as r:
            assert r.status == 200, await r.text()
    return live


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    data = tmp_path_factory.mktemp("provenance") / "data"
    with majlis_server(data) as server:
        space = server.create_space("Provenance: قابل للتحقق")
        live = asyncio.run(_record(server, space))

        async def final() -> tuple[dict[str, Any], str, dict[str, Any]]:
            async with aiohttp.ClientSession() as http:
                doc, cache = await _get_json(http, server.base + space["page_url"].replace(
                    "/s/", "/live/") + "/provenance.json")  # fmt: skip
                key, _ = await _get_json(http, server.base + "/.well-known/majlis-signing-key")
            return doc, cache, key

        doc, cache, key = asyncio.run(final())
        assert cache == "public, max-age=86400"
        yield Recorded(server, space, data / "spaces" / space["id"], live, doc, key["public_key"])


def majlis(*args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "majlis.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


# -- the untouched replay ------------------------------------------------------------------


def test_live_document_grows_and_its_links_are_the_final_ones(recorded: Recorded) -> None:
    final = recorded.final
    assert final["ended"] is True and final["signature"]
    assert len(final["segments"]) >= 4
    assert final["title"] == "Provenance: قابل للتحقق"
    (first, first_cache), (second, _) = recorded.live
    assert first_cache == "public, max-age=1"
    assert first["signature"] is None and first["ended"] is False
    assert first["key_id"] == final["key_id"]
    assert len(second["segments"]) > len(first["segments"])
    for doc in (first, second):
        n = len(doc["segments"])
        assert doc["segments"] == final["segments"][:n]
        # A head noted while live is a link of the signed chain.
        assert doc["chain_head"] == final["segments"][n - 1]["link"]


@pytest.mark.parametrize("form", ["page", "multivariant", "playlist"])
def test_untouched_replay_verifies_by_url(recorded: Recorded, form: str) -> None:
    path = {
        "page": recorded.space["page_url"],
        "multivariant": recorded.space["multivariant_url"],
        "playlist": recorded.space["playlist_url"],
    }[form]
    code, out = majlis("verify", recorded.url(path))
    n = len(recorded.final["segments"])
    assert code == 0, out
    assert out.startswith(f"INTACT: {n} segments, ")
    assert f"signed by key {recorded.final['key_id']}" in out


def test_untouched_folder_verifies_with_the_servers_own_key(recorded: Recorded) -> None:
    code, out = majlis("verify", str(recorded.folder))
    assert code == 0, out
    assert out.startswith("INTACT: ")


def test_majlis_key_prints_the_served_key(recorded: Recorded) -> None:
    code, out = majlis("key", "--data", str(recorded.folder.parent.parent))
    assert code == 0
    assert recorded.key_b64 in out and recorded.final["key_id"] in out


# -- tampered copies -------------------------------------------------------------------------


@pytest.fixture
def copy(recorded: Recorded, tmp_path: Path) -> Path:
    return Path(shutil.copytree(recorded.folder, tmp_path / "copy"))


def _index(folder: Path) -> list[str]:
    return (folder / "segments.jsonl").read_text().splitlines()


def _write_index(folder: Path, lines: list[str]) -> None:
    (folder / "segments.jsonl").write_text("".join(line + "\n" for line in lines))


def verify_copy(recorded: Recorded, folder: Path, key: str | None = None) -> tuple[int, str]:
    return majlis("verify", str(folder), "--key", key or recorded.key_b64)


def test_the_copy_verifies_before_tampering(recorded: Recorded, copy: Path) -> None:
    code, out = verify_copy(recorded, copy)
    assert code == 0, out


def test_a_copy_without_key_cannot_be_checked(copy: Path) -> None:
    code, out = majlis("verify", str(copy))
    assert code == 2
    assert "give --key" in out


def test_one_changed_byte(recorded: Recorded, copy: Path) -> None:
    path = copy / "s" / "1.m4s"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert out.startswith("TAMPERED:")
    assert "segment 1 (s/1.m4s): content changed (sha256 " in out
    assert out.count("\n  - ") == 1, out  # nothing else is reported


def test_a_dropped_segment(recorded: Recorded, copy: Path) -> None:
    lines = _index(copy)
    _write_index(copy, lines[:2] + lines[3:])
    (copy / "s" / "2.m4s").unlink()
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert "segment 2 missing from playlist" in out


def test_a_segment_file_deleted_but_still_listed(recorded: Recorded, copy: Path) -> None:
    (copy / "s" / "2.m4s").unlink()
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert "segment 2 (s/2.m4s): file missing" in out


def test_two_segment_files_swapped(recorded: Recorded, copy: Path) -> None:
    a, b = copy / "s" / "1.m4s", copy / "s" / "2.m4s"
    a.rename(copy / "tmp")
    b.rename(a)
    (copy / "tmp").rename(b)
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert "segments 1 and 2 out of order" in out


def test_two_segments_swapped_in_the_listing(recorded: Recorded, copy: Path) -> None:
    lines = _index(copy)
    lines[1], lines[2] = lines[2], lines[1]
    _write_index(copy, lines)
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert "segments 1 and 2 out of order" in out


def test_truncated_listing(recorded: Recorded, copy: Path) -> None:
    lines = _index(copy)
    n = len(recorded.final["segments"])
    _write_index(copy, lines[:-2])
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert f"playlist truncated: ends at segment {n - 3} of 0–{n - 1} ({n - 2} of {n} " in out


def test_truncated_playlist(recorded: Recorded, copy: Path) -> None:
    async def playlist() -> str:
        url = recorded.url(recorded.space["playlist_url"])
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return await resp.text()

    text = asyncio.run(playlist())
    n = len(recorded.final["segments"])
    # Cut after segment n - 3, as a player would see a replay cut short: no ENDLIST.
    cut = text.index(f"s/{n - 3}.m4s\n") + len(f"s/{n - 3}.m4s\n")
    (copy / "audio.m3u8").write_text(text[:cut])
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert "playlist has no EXT-X-ENDLIST" in out
    assert f"playlist truncated: ends at segment {n - 3} of 0–{n - 1} ({n - 2} of {n} " in out


def _edit_document(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "provenance.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_replaced_signature(recorded: Recorded, copy: Path) -> None:
    other = SigningKey.generate().sign(b"something else")

    def replace(doc: dict[str, Any]) -> None:
        doc["signature"] = base64.b64encode(other).decode()

    _edit_document(copy, replace)
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert "signature invalid" in out


def test_edited_document_to_match_an_edited_segment(recorded: Recorded, copy: Path) -> None:
    """Changing a segment and its hash in the document still breaks the chain and signature."""
    path = copy / "s" / "1.m4s"
    path.write_bytes(path.read_bytes() + b"\0")

    def rehash(doc: dict[str, Any]) -> None:
        import hashlib

        doc["segments"][1]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()

    _edit_document(copy, rehash)
    code, out = verify_copy(recorded, copy)
    assert code == 1, out
    assert "signature invalid" in out
    assert "chain broken at segment 1" in out


def test_wrong_key(recorded: Recorded, copy: Path) -> None:
    other = SigningKey.generate().public
    code, out = verify_copy(recorded, copy, other.base64)
    assert code == 1, out
    assert f"signed by key {recorded.final['key_id']}, expected {other.key_id}" in out


def test_wrong_key_by_url(recorded: Recorded) -> None:
    other = SigningKey.generate().public
    code, out = majlis("verify", recorded.url(recorded.space["page_url"]), "--key", other.base64)
    assert code == 1, out
    assert f"signed by key {recorded.final['key_id']}, expected {other.key_id}" in out


# -- what cannot be checked ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("/live/nope/audio.m3u8", "HTTP 404"),
        ("/", "is not an HLS playlist or a Majlis space page"),
        ("/healthz", "is not an HLS playlist or a Majlis space page"),
    ],
)
def test_unusable_urls_exit_2_without_traceback(
    recorded: Recorded, target: str, message: str
) -> None:
    code, out = majlis("verify", recorded.url(target))
    assert code == 2, out
    assert message in out and "Traceback" not in out


def test_garbage_folder_exits_2(tmp_path: Path) -> None:
    (tmp_path / "provenance.json").write_bytes(b"\xff\x00 not json")
    code, out = majlis("verify", str(tmp_path), "--key", SigningKey.generate().public.base64)
    assert code == 2, out
    assert "provenance.json is not JSON" in out and "Traceback" not in out


def test_bad_key_argument_exits_2(recorded: Recorded) -> None:
    code, out = majlis("verify", str(recorded.folder), "--key", "not-a-key")
    assert code == 2, out
    assert "--key: " in out and "Traceback" not in out


# -- across a restart --------------------------------------------------------------------------


async def _talk(base: str, space: dict[str, Any], seconds: float) -> None:
    async with aiohttp.ClientSession() as http:
        pub = await publish(http, base, space["whip_url"], space["host_token"], ToneTrack(660))
        await asyncio.sleep(seconds)
        await pub.pc.close()


async def test_chain_continues_across_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with majlis_server(data) as first:
        space = first.create_space("Survives a restart")
        await _talk(first.base, space, 2.5)
        async with aiohttp.ClientSession() as http:
            before, _ = await _get_json(http, first.base + f"/live/{space['id']}/provenance.json")
        assert stop(first.process) == 0, first.log()
    with majlis_server(data) as second:
        doc_url = second.base + f"/live/{space['id']}/provenance.json"
        async with aiohttp.ClientSession() as http:
            restored, _ = await _get_json(http, doc_url)
            assert restored["segments"][: len(before["segments"])] == before["segments"]
            await _talk(second.base, space, 2.5)
            headers = {"Authorization": f"Bearer {space['host_token']}"}
            async with http.post(f"{second.base}/api/spaces/{space['id']}/end", headers=headers):
                pass
            final, _ = await _get_json(http, doc_url)
        assert len(final["segments"]) > len(restored["segments"])
        assert final["segments"][: len(restored["segments"])] == restored["segments"]
        code, out = await asyncio.to_thread(majlis, "verify", second.base + space["page_url"])
        assert code == 0, out


# -- clips -------------------------------------------------------------------------------------


def _post(url: str, body: object) -> tuple[int, dict[str, Any]]:
    async def go() -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.post(url, json=body) as resp:
            return resp.status, await resp.json()

    return asyncio.run(go())


def test_clip_is_an_exact_excerpt_and_plays(recorded: Recorded) -> None:
    url = recorded.url(f"/api/spaces/{recorded.space['id']}/clips")
    status, made = _post(url, {"from": 1.2, "to": 3.1})
    assert status == 201, made
    # Whole segments: 1.2 s falls in segment 1 (1.067–2.133 s), 3.1 s in segment 2.
    assert (made["first_msn"], made["last_msn"], made["segments"]) == (1, 2, 2)
    assert made["from"] == pytest.approx(1.0666667) and made["to"] == pytest.approx(3.2)
    code, out = majlis("verify", recorded.url(made["playlist_url"]))
    assert code == 0, out
    assert out.startswith("INTACT: clip of segments 1–2 (2 segments, 2.1 s) is an exact excerpt")
    assert f"signed by key {recorded.final['key_id']}" in out

    async def media() -> bytes:
        async with aiohttp.ClientSession() as http:
            async with http.get(recorded.url(made["playlist_url"])) as resp:
                assert resp.headers["Cache-Control"] == "public, max-age=86400"
                uris = [ln for ln in (await resp.text()).splitlines() if ln.startswith("/live/")]
            assert uris == [f"/live/{recorded.space['id']}/s/{n}.m4s" for n in (1, 2)]
            init = await (
                await http.get(recorded.url(f"/live/{recorded.space['id']}/init.mp4"))
            ).read()
            return init + b"".join([await (await http.get(recorded.url(u))).read() for u in uris])

    samples = decode_mp4(asyncio.run(media()))
    assert samples.size > 48_000 * 1.8
    assert tone_power(samples, 440.0) > 0.3


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"from": 2, "to": 1}, 400, "0 <= from < to"),
        ({"from": "0", "to": 1}, 400, "'from' is required and must be a number"),
        ({"from": 1e9, "to": 2e9}, 400, "'from' is past the end of the replay"),
    ],
)
def test_bad_clip_requests(recorded: Recorded, body: object, status: int, message: str) -> None:
    got, answer = _post(recorded.url(f"/api/spaces/{recorded.space['id']}/clips"), body)
    assert got == status and message in answer["detail"], answer


def test_clip_of_a_live_space_is_refused(server: RunningServer) -> None:
    space = server.create_space("Not ended")
    got, answer = _post(server.base + f"/api/spaces/{space['id']}/clips", {"from": 0, "to": 1})
    assert got == 409 and "ended replays" in answer["detail"], answer


async def _altering_proxy(upstream: str, alter: str) -> tuple[web.AppRunner, str]:
    """An HTTP cache in front of the server that changes one byte of one file."""

    async def forward(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as http, http.get(upstream + request.path_qs) as resp:
            body, status, ctype = await resp.read(), resp.status, resp.content_type
        if request.path.endswith(alter):
            changed = bytearray(body)
            changed[len(changed) // 2] ^= 0x01
            body = bytes(changed)
        return web.Response(body=body, status=status, content_type=ctype)

    app = web.Application()
    app.router.add_get("/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_clip_with_one_altered_segment_fails(recorded: Recorded) -> None:
    runner, base = await _altering_proxy(recorded.server.base, "/s/2.m4s")
    try:
        clip_url = f"{base}/clips/{recorded.space['id']}.1-3/audio.m3u8"
        code, out = await asyncio.to_thread(majlis, "verify", clip_url, "--key", recorded.key_b64)
        assert code == 1, out
        assert "segment 2 (s/2.m4s): content changed (sha256 " in out
        # The same edge altering the whole replay is caught the same way.
        code, out = await asyncio.to_thread(majlis, "verify", base + recorded.space["page_url"])
        assert code == 1, out
        assert "segment 2 (s/2.m4s): content changed (sha256 " in out
        # Through an honest path the clip verifies.
        code, out = await asyncio.to_thread(
            majlis, "verify", recorded.url(f"/clips/{recorded.space['id']}.1-3")
        )
        assert code == 0, out
    finally:
        await runner.cleanup()


def test_clip_outside_the_replay_is_not_found(recorded: Recorded) -> None:
    async def status() -> int:
        url = recorded.url(f"/clips/{recorded.space['id']}.1-999/clip.json")
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status

    assert asyncio.run(status()) == 404


async def _foreign_server() -> tuple[web.AppRunner, str]:
    """Another HLS origin: a valid playlist without provenance, and an endless playlist."""

    async def playlist(request: web.Request) -> web.Response:
        text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n"
        return web.Response(text=text, content_type="application/vnd.apple.mpegurl")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse it early
        await response.prepare(request)
        try:
            await response.write(b"#EXTM3U\n")
            for _ in range(10 * 1024):  # 10 MiB of comments
                await response.write(b"#" * 1024)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the verifier hung up at its limit, as it should
        return response

    app = web.Application()
    app.router.add_get("/other/audio.m3u8", playlist)
    app.router.add_get("/huge.m3u8", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_another_servers_playlist_and_a_huge_file_exit_2() -> None:
    runner, base = await _foreign_server()
    try:
        code, out = await asyncio.to_thread(majlis, "verify", base + "/other/audio.m3u8")
        assert code == 2, out
        assert "no provenance document at" in out and "not a Majlis replay" in out
        code, out = await asyncio.to_thread(majlis, "verify", base + "/huge.m3u8")
        assert code == 2, out
        assert "is larger than 8388608 bytes" in out and "Traceback" not in out
    finally:
        await runner.cleanup()
