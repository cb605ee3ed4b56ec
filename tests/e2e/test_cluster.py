"""Two Majlis nodes sharing a real Redis on loopback: a space made on one is reached through
the other; the owner dies and the other node takes the space over with every announced
segment; Redis dies and the live space plays on, and everything recovers when it returns."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import m3u8

from tests.support.audio import decode_mp4, tone_power
from tests.support.nginx import nginx_edge
from tests.support.redis import RunningRedis, redis_server
from tests.support.server import RunningServer, majlis_server
from tests.support.whip import Publisher, ToneTrack, publish

TRUST = ("--trusted-proxy", "127.0.0.1")
NODE_ID = re.compile(rb"n-[0-9a-f]{12}")


def _node(stack: ExitStack, tmp: Path, name: str, redis: RunningRedis) -> RunningServer:
    return stack.enter_context(majlis_server(tmp / name, "--redis", redis.url, *TRUST))


def _uris(playlist: m3u8.M3U8) -> list[str]:
    """The complete segments (the one in progress is listed by its parts only)."""
    return [s.uri for s in playlist.segments if s.uri]


async def _playlist(http: aiohttp.ClientSession, url: str) -> tuple[m3u8.M3U8, str]:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return m3u8.loads(await resp.text()), resp.headers.get("X-Majlis-Node", "")


async def _media(http: aiohttp.ClientSession, base: str, uris: list[str]) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    for uri in uris:
        async with http.get(base + "/" + uri) as resp:
            assert resp.status == 200, (uri, resp.status)
            got[uri] = await resp.read()
    return got


async def _talk(
    http: aiohttp.ClientSession, base: str, space: dict[str, str], hz: float
) -> Publisher:
    return await publish(http, base, space["whip_url"], space["host_token"], ToneTrack(hz))


async def _listen(
    http: aiohttp.ClientSession,
    base: str,
    space_id: str,
    address: str,
    agent: str,
    end: bool = True,
) -> str:
    """One listener (seen at `address` behind a trusted proxy) who plays for over 5 s, then
    stops (or plays on); returns the session's heartbeat URL, below `base`."""
    headers = {"X-Forwarded-For": address, "User-Agent": agent}
    async with http.post(f"{base}/live/{space_id}/sessions", json={}, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        sid = (await resp.json())["session"]
    await asyncio.sleep(1.2)
    beat = f"/live/{space_id}/sessions/{sid}/heartbeat"
    body = {"played_s": 6, "ended": end}
    async with http.post(base + beat, json=body, headers=headers) as resp:
        assert resp.status == 204, await resp.text()
    return beat


async def _uniques(http: aiohttp.ClientSession, base: str, space_id: str) -> int | None:
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
    found = re.search(
        rf'majlis_cluster_unique_listeners{{space="{space_id}",mode="live"}} (\d+)', text
    )
    return int(found.group(1)) if found else None


def _node_id(server: RunningServer) -> str:
    return (server.data / "node_id").read_text().strip()


async def test_space_moves_to_another_node_when_its_owner_dies(tmp_path: Path) -> None:
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(tmp_path / "redis"))
        a = _node(stack, tmp_path, "a", redis)
        b = _node(stack, tmp_path, "b", redis)
        assert a.admin_token == b.admin_token, "one admin token for the whole cluster"
        # An edge in front of both nodes: whichever answers relays to the owner.
        edge = stack.enter_context(nginx_edge(a.base, "--origin", b.base, "--workers", "1"))
        space = a.create_space("Across nodes")
        via_b = b.base + space["playlist_url"]
        folder = via_b.rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as http:
            # Made on A, found through B (relayed to A, which runs it).
            async with http.get(f"{b.base}/api/spaces/{space['id']}") as resp:
                assert resp.status == 200
                assert resp.headers["X-Majlis-Node"] == _node_id(a)
            admin = {"Authorization": f"Bearer {b.admin_token}"}
            async with http.get(b.base + "/api/spaces", headers=admin) as resp:
                assert space["id"] in [s["id"] for s in (await resp.json())["spaces"]]
            # A speaker publishes through B: the WHIP exchange is relayed, media goes to A.
            pub = await _talk(http, b.base, space, 440.0)
            await asyncio.sleep(4.0)
            before, node = await _playlist(http, via_b)
            assert node == _node_id(a)
            announced = _uris(before)
            assert len(announced) >= 2, before.dumps()
            first = await _media(http, folder, announced)
            init = (await _media(http, folder, ["init.mp4"]))["init.mp4"]
            samples = decode_mp4(init + b"".join(first[u] for u in announced[1:]))
            assert tone_power(samples, 440.0) > 0.1

            # Sessions through either node are counted once each, bots not at all.
            browser = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36"
            *_, still_playing = await asyncio.gather(
                _listen(http, a.base, space["id"], "198.51.100.7", browser),
                _listen(http, b.base, space["id"], "203.0.113.9", browser),
                _listen(http, b.base, space["id"], "198.51.100.7", browser),
                _listen(http, b.base, space["id"], "192.0.2.1", "curl/8.5"),
                _listen(http, b.base, space["id"], "198.51.100.20", browser, end=False),
            )
            await asyncio.sleep(1.5)  # counted at the next sync
            assert await _uniques(http, a.base, space["id"]) == 4

            # The parts of the segment in progress, which A has announced.
            in_progress, _ = await _playlist(http, via_b)
            pending = re.findall(r'URI="(p/\d+\.\d+\.m4s)"', in_progress.dumps())
            assert pending

            # The owner dies without a word.
            a.process.kill()
            a.process.wait(5)
            await pub.pc.close()
            killed = time.monotonic()
            while True:
                async with http.get(via_b) as resp:
                    if resp.status == 200 and "X-Majlis-Node" not in resp.headers:
                        after = m3u8.loads(await resp.text())
                        break
                    assert resp.status in (503, 200), resp.status
                assert time.monotonic() - killed < 12, "no node took the space over"
                await asyncio.sleep(0.2)
            took = time.monotonic() - killed
            print(f"takeover {took:.2f} s after the owner was killed")
            assert took < 8.0
            # The edge, which had A first, now fills from B.
            through_edge, _ = await _playlist(http, edge.base + space["playlist_url"])
            assert _uris(through_edge)[: len(announced)] == announced

            # Every segment A announced is still listed, byte for byte the same.
            assert _uris(after)[: len(announced)] == announced
            assert await _media(http, folder, announced) == first
            assert await _uniques(http, b.base, space["id"]) == 4, "the count moved with it"
            # A listener who plays on through the takeover keeps their session on B (its id
            # proves it was issued for this space), so they are still counted once.
            playing = {"X-Forwarded-For": "198.51.100.20", "User-Agent": browser}
            beat = b.base + still_playing
            async with http.post(beat, json={"played_s": 6}, headers=playing) as resp:
                assert resp.status == 204, await resp.text()
            await asyncio.sleep(1.5)
            assert await _uniques(http, b.base, space["id"]) == 4

            # The speaker comes back (WHIP again, to whichever node): the space goes on after
            # one discontinuity, with the new voice.
            pub = await _talk(http, b.base, space, 880.0)
            await asyncio.sleep(4.0)
            later, node = await _playlist(http, via_b)
            assert node == ""
            uris = _uris(later)
            assert uris[: len(announced)] == announced
            flags = [s.discontinuity for s in later.segments if s.uri]
            assert flags.count(True) == 1 and flags.index(True) >= len(announced), later.dumps()
            cut = flags.index(True)
            edge_folder = (edge.base + space["playlist_url"]).rsplit("/", 1)[0]
            assert await _media(http, edge_folder, uris[cut:]) == await _media(
                http, folder, uris[cut:]
            )
            fresh = await _media(http, folder, uris[cut + 1 :])
            # The new run's parts have their own URIs: A's, cached for a year by edges, are
            # never reused for other audio (the segment they belonged to was lost).
            assert all(p.startswith("p/1/") for p in re.findall(r'URI="(p/[^"]+)"', later.dumps()))
            first_new = int(uris[cut].removeprefix("s/").removesuffix(".m4s"))
            # Almost always the preload hint at least (the snapshot is taken just before the
            # kill, so A rarely completes another segment in between).
            lost = [u for u in pending if int(u[2:].split(".")[0]) >= first_new]
            for uri in pending:
                async with http.get(f"{folder}/{uri}") as resp:
                    assert resp.status == (404 if uri in lost else 200), (uri, resp.status)
            samples = decode_mp4(init + b"".join(fresh.values()))
            assert tone_power(samples, 880.0) > 0.1
            assert tone_power(samples, 440.0) < 0.01
            await pub.pc.close()

            # The host's token, issued by A, ends the space on B; the replay verifies.
            async with http.post(
                f"{b.base}/api/spaces/{space['id']}/end",
                headers={"Authorization": f"Bearer {space['host_token']}"},
            ) as resp:
                assert resp.status == 200, await resp.text()
            replay, _ = await _playlist(http, via_b)
            assert replay.is_endlist
            assert _uris(replay)[: len(announced)] == announced


async def _ready(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, object]]:
    async with http.get(base + "/readyz") as resp:
        return resp.status, await resp.json()


async def _until(check: object, seconds: float) -> float:
    assert callable(check)
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < seconds, "condition not reached in time"
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def test_live_space_plays_on_while_redis_is_away(tmp_path: Path) -> None:
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(tmp_path / "redis"))
        a = _node(stack, tmp_path, "a", redis)
        b = _node(stack, tmp_path, "b", redis)
        space = a.create_space("Outage")
        url = a.base + space["playlist_url"]
        admin = {"Authorization": f"Bearer {a.admin_token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http:
            pub = await _talk(http, a.base, space, 440.0)
            await asyncio.sleep(2.5)
            assert (await _ready(http, a.base))[0] == 200

            redis.kill()

            async def not_ready() -> bool:
                status, body = await _ready(http, a.base)
                return status == 503 and "redis" in str(body["reasons"])

            await _until(not_ready, 5)
            start, _ = await _playlist(http, url)
            async with http.post(a.base + "/api/spaces", json={"title": "x"}, headers=admin) as r:
                assert r.status == 503, "no new spaces while the shared store is away"
                assert "Redis" in (await r.json())["detail"]
            await asyncio.sleep(5.0)  # longer than a lease: nobody may take the space meanwhile
            during, _ = await _playlist(http, url)
            grown = during.media_sequence + len(during.segments)
            assert grown >= start.media_sequence + len(start.segments) + 3, "the space plays on"

            redis.start()

            async def ready() -> bool:
                return (await _ready(http, a.base))[0] == 200

            back = await _until(ready, 10)
            print(f"ready again {back:.2f} s after Redis returned")
            await asyncio.sleep(3.0)
            async with http.post(a.base + "/api/spaces", json={"title": "y"}, headers=admin) as r:
                assert r.status == 201
            # Still A's space, never taken over: one pipeline, no discontinuity.
            after, node = await _playlist(http, b.base + space["playlist_url"])
            assert node == _node_id(a)
            assert not any(s.discontinuity for s in after.segments), after.dumps()
            async with http.get(b.base + "/metrics") as resp:
                assert "majlis_cluster_adopted_total 0" in await resp.text()

            # What was recorded while Redis was away reached it too.
            async def replicated() -> bool:
                async with http.get(a.base + "/metrics") as resp:
                    return "majlis_cluster_replication_pending 0" in await resp.text()

            await _until(replicated, 10)
            await pub.pc.close()

            # Ended on A, its replay is served by B itself and verifies with A's key.
            async with http.post(
                f"{a.base}/api/spaces/{space['id']}/end",
                headers={"Authorization": f"Bearer {space['host_token']}"},
            ) as resp:
                assert resp.status == 200
            key = await (await http.get(a.base + "/.well-known/majlis-signing-key")).json()
            replay_url = b.base + space["playlist_url"]

            # A clip names its space: the first node asked for one serves it, copying the
            # replay from Redis if it has none (B has not served this space's replay yet).
            clip_url = f"{b.base}/clips/{space['id']}.0-1"

            async def clip_here() -> bool:
                async with http.get(clip_url + "/audio.m3u8") as resp:
                    return resp.status == 200

            await _until(clip_here, 10)
            code, out = await asyncio.to_thread(_verify, clip_url, key["public_key"])
            assert code == 0 and "exact excerpt" in out, out

            async def replay_here() -> bool:
                async with http.get(replay_url) as resp:
                    return resp.status == 200 and "X-Majlis-Node" not in resp.headers

            await _until(replay_here, 10)
            replay, _ = await _playlist(http, replay_url)
            assert replay.is_endlist
            code, out = await asyncio.to_thread(_verify, replay_url, key["public_key"])
            assert code == 0, out


def _verify(url: str, key: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "majlis.cli", "verify", url, "--key", key],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr
