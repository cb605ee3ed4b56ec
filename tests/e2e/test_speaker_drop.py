"""A speaker whose network dies (process killed, no DELETE) leaves the stage by itself,
while the speaker who stays is heard throughout and the live edge never stops."""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.audio import decode_mp4, tone_power
from tests.support.player import Player, ReceivedPart
from tests.support.server import RunningServer
from tests.support.whip import ToneTrack, publish

ROOT = Path(__file__).resolve().parents[2]
STAYS, DIES = 440.0, 880.0
DROP_LIMIT_S = 10.0  # the server's stall timeout is 5 s, checked every 0.5 s
_PART = re.compile(r"p/(\d+)\.(\d+)\.m4s")


async def _state(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url) as resp:
        assert resp.status == 200
        state: dict[str, Any] = await resp.json()
        return state


async def _speaker_in_child(server: RunningServer, space: dict[str, str]) -> tuple[Any, str]:
    """Start a tone publisher in a process of its own; returns (process, session id)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.publish_tone",
        server.base, space["whip_url"], space["speaker_token"], str(DIES), "dies",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    async with asyncio.timeout(20):
        while line := (await proc.stdout.readline()).decode():
            seen.append(line)
            if line.startswith("Location: "):
                return proc, line.split()[1].rsplit("/", 1)[1]
    raise AssertionError("publisher exited:\n" + "".join(seen))


def _positions(parts: list[ReceivedPart]) -> list[int]:
    found = [_PART.search(p.uri) for p in parts]
    return [int(m[1]) * 5 + int(m[2]) for m in found if m]


async def test_dead_speaker_is_dropped_and_the_other_heard(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = server.create_space("Speaker drop")
    state_url = server.base + space["state_url"]
    stays = await publish(
        http, server.base, space["whip_url"], space["host_token"], ToneTrack(STAYS), "stays"
    )
    proc, _ = await _speaker_in_child(server, space)
    dying = "dies"  # stage entries carry names and public ids, never WHIP session ids
    try:
        async with asyncio.timeout(15):
            while True:
                stage = (await _state(http, state_url))["stage"]
                if len(stage) == 2 and all(s["talking"] for s in stage):
                    break
                await asyncio.sleep(0.1)
        player = Player(http, server.base + space["playlist_url"])
        listening = asyncio.create_task(player.run(DROP_LIMIT_S + 4))
        await asyncio.sleep(1.5)  # some audio with both speakers first

        killed_at = time.perf_counter()
        proc.kill()  # SIGKILL, by PID: no DELETE, no DTLS close alert, packets just stop
        await proc.wait()
        silent_after = dropped_after = None
        while dropped_after is None:
            elapsed = time.perf_counter() - killed_at
            assert elapsed < DROP_LIMIT_S, f"still on stage after {elapsed:.1f} s"
            stage = {s["name"]: s for s in (await _state(http, state_url))["stage"]}
            assert "stays" in stage, "the speaker who stayed is gone"
            if dying not in stage:
                dropped_after = elapsed
            elif silent_after is None and not stage[dying]["talking"]:
                silent_after = elapsed
            await asyncio.sleep(0.1)
        dropped_at = killed_at + dropped_after
        print(f"dead speaker: not talking after {silent_after or 0:.2f} s, dropped after "
              f"{dropped_after:.2f} s")  # fmt: skip
        await listening
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await stays.pc.close()

    assert dropped_after > 4.0, "dropped before the stall timeout: by what?"
    before = [p for p in player.parts if p.received_at < killed_at]
    after_kill = [p for p in player.parts if p.received_at > killed_at + 0.5]
    after_drop = [p for p in player.parts if p.received_at > dropped_at + 0.5]
    both = decode_mp4(player.init + b"".join(p.data for p in before))
    assert tone_power(both, STAYS) > 0.3 and tone_power(both, DIES) > 0.3
    alone = decode_mp4(player.init + b"".join(p.data for p in after_kill))
    assert tone_power(alone, STAYS) > 0.8, "the speaker who stayed must be heard throughout"
    assert tone_power(alone, DIES) < 0.01
    assert len(after_drop) >= 5, "the live edge kept moving after the drop"

    # Every part in order, none missing, none late: the mix never waited for the dead one.
    positions = _positions(player.parts)
    assert positions == list(range(positions[0], positions[0] + len(positions))), positions
    times = [p.received_at for p in player.parts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 1.0, f"longest wait between parts {max(gaps):.3f} s"
    print(f"{len(player.parts)} parts, longest gap {max(gaps):.3f} s")
