"""A WHIP speaker in a process of its own, so a test can kill it like a dying network.

    python -m tests.support.publish_tone BASE WHIP_URL TOKEN FREQ [NAME]

Publishes a sine tone, prints `Location: <WHIP session URL>` once the answer is applied,
then keeps sending until it is killed. It never sends a DELETE.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from tests.support.whip import ToneTrack, publish


async def main(base: str, whip_url: str, token: str, freq: float, name: str) -> None:
    async with aiohttp.ClientSession() as session:
        pub = await publish(session, base, whip_url, token, ToneTrack(freq), name=name)
        print(f"Location: {pub.location}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    base, whip_url, token, freq = sys.argv[1:5]
    asyncio.run(main(base, whip_url, token, float(freq), sys.argv[5] if len(sys.argv) > 5 else ""))
