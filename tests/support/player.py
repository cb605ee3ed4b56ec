"""An LL-HLS player made of HTTP requests: blocking reloads, then every part in order."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import aiohttp

_PART = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"')
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"')
_MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


async def wait_live(http: aiohttp.ClientSession, url: str, within: float = 20.0) -> None:
    """Until the playlist at `url` is live: a segment listed and a part announced."""
    deadline = time.monotonic() + within
    last = "no answer"
    while time.monotonic() < deadline:
        async with http.get(url) as resp:
            text = await resp.text()
            if resp.status == 200 and "#EXT-X-PRELOAD-HINT" in text and "#EXTINF" in text:
                return
            last = f"{resp.status} {text[:120]!r}"
        await asyncio.sleep(0.2)
    raise AssertionError(f"the space did not go live within {within} s: {last}")


@dataclass
class ReceivedPart:
    uri: str
    data: bytes
    received_at: float  # perf_counter()


@dataclass
class Player:
    session: aiohttp.ClientSession
    playlist_url: str  # absolute
    init: bytes = b""
    parts: list[ReceivedPart] = field(default_factory=list)
    playlists: int = 0

    def _abs(self, uri: str) -> str:
        return self.playlist_url.rsplit("/", 1)[0] + "/" + uri

    async def _get(self, url: str) -> tuple[int, bytes]:
        async with self.session.get(url) as resp:
            return resp.status, await resp.read()

    async def run(self, seconds: float) -> None:
        """Follow the live edge for ``seconds``, fetching every part once, in order."""
        deadline = time.perf_counter() + seconds
        status, body = await self._get(self.playlist_url)
        assert status == 200, f"playlist answered {status}: {body[:200]!r}"
        text = body.decode()
        self.init = (await self._get(self._abs(_MAP.search(text).group(1))))[1]  # type: ignore[union-attr]
        seen: set[str] = set()
        # Start at the live edge: only parts that appear from now on.
        for _, uri in _PART.findall(text):
            seen.add(uri)
        while time.perf_counter() < deadline:
            hint = _HINT.search(text)
            if hint is None:
                break  # ended
            msn, part = hint.group(1).rsplit("/", 1)[1].removesuffix(".m4s").split(".")
            # The preload hint request and the blocking reload run together, as hls.js does.
            part_task = asyncio.create_task(self._get(self._abs(hint.group(1))))
            status, body = await self._get(f"{self.playlist_url}?_HLS_msn={msn}&_HLS_part={part}")
            self.playlists += 1
            pstatus, pdata = await part_task
            now = time.perf_counter()
            if pstatus == 200 and hint.group(1) not in seen:
                seen.add(hint.group(1))
                self.parts.append(ReceivedPart(hint.group(1), pdata, now))
            if status != 200:
                await asyncio.sleep(0.1)
                continue
            text = body.decode()
            for _, uri in _PART.findall(text):
                if uri not in seen:
                    seen.add(uri)
                    pstatus, pdata = await self._get(self._abs(uri))
                    if pstatus == 200:
                        self.parts.append(ReceivedPart(uri, pdata, time.perf_counter()))

    def media(self) -> bytes:
        return self.init + b"".join(p.data for p in self.parts)
