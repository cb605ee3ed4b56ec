"""The ICE addresses and UDP ports the server offers are the operator's to choose."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support.audio import decode_mp4, tone_power
from tests.support.player import Player
from tests.support.server import majlis_server
from tests.support.whip import ToneTrack, publish

_CANDIDATE = re.compile(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ (\w+)", re.IGNORECASE)


async def test_answer_offers_only_configured_address_and_port_range(tmp_path: Path) -> None:
    with majlis_server(tmp_path / "data", "--ice-ports", "41000-41009") as server:
        space = server.create_space("Ports")
        async with aiohttp.ClientSession() as http:
            pubs = [
                await publish(
                    http, server.base, space["whip_url"], space["host_token"], ToneTrack(f)
                )
                for f in (500.0, 700.0)
            ]
            try:
                for pub in pubs:
                    candidates = _CANDIDATE.findall(pub.answer)
                    assert candidates, pub.answer
                    for host, port, kind in candidates:
                        assert host == "127.0.0.1"
                        assert 41000 <= int(port) <= 41009
                        assert kind == "host"
                ports = {c[1] for pub in pubs for c in _CANDIDATE.findall(pub.answer)}
                assert len(ports) == 2, "each speaker gets its own port"
                await asyncio.sleep(1.5)
                player = Player(http, server.base + space["playlist_url"])
                await player.run(3.0)
                samples = decode_mp4(player.media())
                # Audio came through each port: each tone is clearly there (each holds about
                # half the energy; a loaded machine's underruns can take a share of that).
                assert tone_power(samples, 500.0) > 0.1
                assert tone_power(samples, 700.0) > 0.1
            finally:
                for pub in pubs:
                    await pub.pc.close()


def test_bad_port_range_is_refused_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "majlis.cli",
            "serve",
            "--data",
            str(tmp_path),
            "--ice-ports",
            "9-5",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "port range '9-5' must lie within 1024-65535" in result.stderr
