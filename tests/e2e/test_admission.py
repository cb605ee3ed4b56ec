"""Admission over real HTTP: the waiting line of a full node, attack mode's proof of work
(set by the admin, by a host, or by itself), and a real Chromium page that solves the
challenge, waits in line, and plays the tone once admitted."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from majlis.admission.pow import solve
from majlis.http.pages import strings
from tests.support.browser import chromium, install_ear, listen_for, make_tone_wav
from tests.support.server import RunningServer, majlis_server
from tests.support.whip import ToneTrack, publish, unpublish

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"}
TONE = 1000.0
BITS = 12  # HTTP tests: solved in Python in a few milliseconds

Answer = tuple[int, dict[str, Any], Mapping[str, str]]


@pytest.fixture
def small(tmp_path: Path) -> Iterator[RunningServer]:
    with majlis_server(tmp_path / "data", "--max-listeners", "2") as running:
        yield running


async def start(http: aiohttp.ClientSession, base: str, space: str, **body: Any) -> Answer:
    url = f"{base}/live/{space}/sessions"
    async with http.post(url, json={"mode": "live", **body}, headers=BROWSER) as resp:
        return resp.status, await resp.json(), resp.headers


async def post(http: aiohttp.ClientSession, url: str, token: str, body: object) -> Answer:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def state(http: aiohttp.ClientSession, base: str, space: str) -> dict[str, Any]:
    async with http.get(f"{base}/live/{space}/state.json") as resp:
        value: dict[str, Any] = await resp.json()
        return value


async def admit_with_ticket(
    http: aiohttp.ClientSession, base: str, space: str, ticket: str, within: float
) -> tuple[dict[str, Any], int]:
    """Poll as a waiting client does (honouring Retry-After) until admitted."""
    deadline = time.monotonic() + within
    polls = 0
    while True:
        status, body, headers = await start(http, base, space, ticket=ticket)
        polls += 1
        if status == 201:
            return body, polls
        assert status == 202 and body["position"] >= 1, (status, body)
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {within} s: {body}")
        await asyncio.sleep(float(headers["Retry-After"]))


async def test_full_node_queues_the_third_listener_and_admits_it_after_one_leaves(
    small: RunningServer, http: aiohttp.ClientSession
) -> None:
    space = small.create_space("Full")["id"]
    first, second = [await start(http, small.base, space) for _ in range(2)]
    assert first[0] == second[0] == 201
    assert (await state(http, small.base, space))["waiting_room"] is True
    status, waiting, headers = await start(http, small.base, space)
    assert status == 202, waiting
    assert waiting["waiting"] is True and waiting["position"] == 1
    assert headers["Retry-After"] == str(waiting["retry_after"]) == "1"
    assert headers["Cache-Control"] == "no-store"
    # A fourth comes after the third; both keep their places while the node stays full.
    status, fourth, _ = await start(http, small.base, space)
    assert (status, fourth["position"]) == (202, 2)
    status, again, _ = await start(http, small.base, space, ticket=waiting["ticket"])
    assert (status, again["position"]) == (202, 1)
    seen = await metrics(http, small.base)
    assert (seen["seats"], seen["capacity"], seen["waiting"]) == (2, 2, 2), seen

    # A forged ticket (a smaller number, to jump the line) is refused with the usual error.
    number, expires, mac = fourth["ticket"].split(".")
    forged = f"{int(number) - 1}.{expires}.{mac}"
    status, refused, _ = await start(http, small.base, space, ticket=forged)
    assert status == 403 and refused["error"] == "forbidden", refused
    assert set(refused) == {"error", "status", "detail"} and "ticket" in refused["detail"]

    # One listener leaves: the third (not the fourth) gets in, then its ticket is spent.
    url = f"{small.base}/live/{space}/sessions/{first[1]['session']}"
    async with http.delete(url) as resp:
        assert resp.status == 204
    admitted, polls = await admit_with_ticket(http, small.base, space, waiting["ticket"], 10)
    assert admitted["heartbeat_s"] == 30 and polls <= 4
    status, fourth_again, _ = await start(http, small.base, space, ticket=fourth["ticket"])
    assert (status, fourth_again["position"]) == (202, 1)
    status, spent, _ = await start(http, small.base, space, ticket=waiting["ticket"])
    assert status == 403 and "already used" in spent["detail"]
    # Admitted listeners are never sent away: their heartbeats still count.
    await asyncio.sleep(1.1)  # heartbeats need a second between them
    beat = f"{small.base}/live/{space}/sessions/{second[1]['session']}/heartbeat"
    async with http.post(beat, json={"played_s": 1}) as resp:
        assert resp.status == 204


async def test_attack_mode_asks_for_a_proof_of_work_and_figures_still_count(
    server: RunningServer, http: aiohttp.ClientSession
) -> None:
    created = server.create_space("Under attack")
    space, other = created["id"], server.create_space("Calm")["id"]
    switch = f"{server.base}/api/attack-mode"
    status, mode, _ = await post(http, switch, "wrong", {"enabled": True})
    assert status == 403 and mode["error"] == "forbidden"
    status, mode, _ = await post(
        http, switch, server.admin_token, {"enabled": True, "difficulty": 0}
    )
    assert status == 400 and "difficulty" in mode["detail"]
    status, mode, _ = await post(
        http, switch, server.admin_token, {"enabled": True, "difficulty": BITS}
    )
    assert status == 200 and mode["enabled"] and mode["difficulty"] == BITS, mode
    assert (await state(http, server.base, space))["attack_mode"] is True
    assert (await state(http, server.base, space))["waiting_room"] is False

    status, challenge, headers = await start(http, server.base, space)
    assert status == 401 and challenge["error"] == "pow_required", challenge
    assert headers["WWW-Authenticate"].startswith("Majlis-PoW")
    assert challenge["difficulty"] == BITS and challenge["expires"] > time.time()
    nonce = solve(challenge["challenge"], BITS)
    proof = {"challenge": challenge["challenge"], "nonce": nonce}
    status, admitted, _ = await start(http, server.base, space, pow=proof)
    assert status == 201, admitted
    # The same pass again, a wrong nonce: refused, each with a fresh challenge.
    status, replayed, _ = await start(http, server.base, space, pow=proof)
    assert status == 401 and "already used" in replayed["detail"]
    assert replayed["challenge"] != challenge["challenge"]
    wrong = {"challenge": replayed["challenge"], "nonce": str(int(nonce) + 1)}
    status, refused, _ = await start(http, server.base, space, pow=wrong)
    assert status == 401 and refused["detail"].startswith(("the nonce does not", "this chall"))
    status, bad, _ = await start(http, server.base, space, pow="x")
    assert status == 400 and bad["error"] == "bad_request"
    second = await _solved_session(http, server.base, space)

    # Off for the node, on for one space by its host: only that space asks.
    await post(http, switch, server.admin_token, {"enabled": False})
    host_switch = f"{server.base}/api/spaces/{space}/attack-mode"
    status, _, _ = await post(http, host_switch, created["speaker_token"], {"enabled": True})
    assert status == 403
    status, mode, _ = await post(http, host_switch, created["host_token"], {"enabled": True})
    assert status == 200 and mode["space"] == 16 and mode["node"] is None, mode
    assert (await start(http, server.base, other))[0] == 201
    assert (await start(http, server.base, space))[0] == 401
    assert (await state(http, server.base, other))["attack_mode"] is False

    # Refusals created no session: the figures and /metrics see exactly the two admitted.
    pub = await publish(http, server.base, created["whip_url"], created["host_token"],
                        ToneTrack(440.0), name="host")  # fmt: skip
    try:
        await asyncio.sleep(1.1)  # heartbeats need a second between them
        for sid in (admitted["session"], second):
            url = f"{server.base}/live/{space}/sessions/{sid}/heartbeat"
            async with http.post(url, json={"played_s": 6}) as resp:
                assert resp.status == 204
        assert await _listeners_metric(http, server.base, space, within=10) == 2
        seen = await metrics(http, server.base)
        # 5 challenges sent, 2 passes accepted, 2 refused (a replay, a wrong nonce).
        assert (seen["challenges_total"], seen["passes_total"]) == (5, 2), seen
        assert (seen["pass_refusals_total"], seen["attack_mode"]) == (2, 0), seen
    finally:
        await unpublish(http, server.base, pub)
    report = await _audience(server, space, events=4)
    assert report["sessions"] == 2 and report["counted_sessions"] == 2
    assert report["live"]["unique_listeners"] == 2 and report["live"]["peak_concurrent"] == 2


async def _solved_session(http: aiohttp.ClientSession, base: str, space: str) -> str:
    status, challenge, _ = await start(http, base, space)
    assert status == 401, challenge
    nonce = solve(challenge["challenge"], challenge["difficulty"])
    status, body, _ = await start(
        http, base, space, pow={"challenge": challenge["challenge"], "nonce": nonce}
    )
    assert status == 201, body
    session: str = body["session"]
    return session


async def metrics(http: aiohttp.ClientSession, base: str) -> dict[str, int]:
    """The majlis_admission_* series of /metrics, by name without the prefix."""
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
    found = re.findall(r"^majlis_admission_(\w+) (\d+)$", text, re.M)
    return {name: int(value) for name, value in found}


async def _listeners_metric(
    http: aiohttp.ClientSession, base: str, space: str, within: float
) -> int:
    """majlis_listeners for the space, once the space is live and listed."""
    pattern = re.compile(rf'^majlis_listeners\{{space="{re.escape(space)}"\}} (\d+)$', re.M)
    deadline = time.monotonic() + within
    while True:
        async with http.get(base + "/metrics") as resp:
            text = await resp.text()
        if found := pattern.search(text):
            return int(found.group(1))
        if time.monotonic() > deadline:
            raise AssertionError(f"no majlis_listeners for {space} in /metrics:\n{text}")
        await asyncio.sleep(0.1)


async def _audience(server: RunningServer, space: str, events: int) -> dict[str, Any]:
    """`majlis audience --json`, polled until the writer flushed ``events`` events."""
    deadline = time.monotonic() + 10
    while True:
        proc = await asyncio.create_subprocess_exec(
            # A space id may begin with "-": it goes after "--".
            sys.executable, "-m", "majlis.cli", "audience", "--data", str(server.data),
            "--json", "--", space, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        report: dict[str, Any] = json.loads(out)
        if report["events"] >= events or time.monotonic() > deadline:
            assert report["events"] == events, report
            return report
        await asyncio.sleep(0.2)


async def test_passes_and_tickets_are_bound_to_the_address_behind_a_trusted_proxy(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    args = ("--attack-mode", "--pow-difficulty", "8", "--max-listeners", "1",
            "--trusted-proxy", "127.0.0.1")  # fmt: skip
    with majlis_server(tmp_path / "data", *args) as server:
        space = server.create_space("Behind an edge")["id"]

        async def from_(address: str, **body: Any) -> Answer:
            url = f"{server.base}/live/{space}/sessions"
            headers = {**BROWSER, "X-Forwarded-For": address}
            async with http.post(url, json={"mode": "live", **body}, headers=headers) as resp:
                return resp.status, await resp.json(), resp.headers

        def solved(challenge: dict[str, Any]) -> dict[str, str]:
            token = challenge["challenge"]
            return {"challenge": token, "nonce": solve(token, challenge["difficulty"])}

        status, challenge, _ = await from_("203.0.113.5")
        assert status == 401 and challenge["difficulty"] == 8
        proof = solved(challenge)
        status, moved, _ = await from_("203.0.113.6", pow=proof)
        assert status == 401 and moved["detail"].startswith("the challenge was not issued to this")
        assert (await from_("203.0.113.5", pow=proof))[0] == 201  # the node is now full
        status, challenge, _ = await from_("203.0.113.6")
        status, waiting, _ = await from_("203.0.113.6", pow=solved(challenge))
        assert status == 202, waiting
        status, refused, _ = await from_("203.0.113.7", ticket=waiting["ticket"])
        assert status == 403 and "not issued to this address" in refused["detail"]
        assert (await from_("203.0.113.6", ticket=waiting["ticket"]))[0] == 202


async def test_attack_mode_switches_itself_on_under_a_burst_and_off_after_quiet(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    args = ("--attack-threshold", "5", "--attack-quiet", "2")
    with majlis_server(tmp_path / "data", *args) as server:
        space = server.create_space("Burst")["id"]
        answers = await asyncio.gather(*(start(http, server.base, space) for _ in range(12)))
        codes = sorted(status for status, _, _ in answers)
        assert 201 in codes and 401 in codes, codes
        assert (await state(http, server.base, space))["attack_mode"] is True
        deadline = time.monotonic() + 10
        while (await state(http, server.base, space))["attack_mode"]:
            assert time.monotonic() < deadline, "attack mode did not go off after the quiet"
            await asyncio.sleep(0.2)
        assert (await start(http, server.base, space))[0] == 201


async def _queue_text(page: Page, starts: str) -> str:
    await page.wait_for_function(
        "(t) => document.getElementById('admission').textContent.startsWith(t)",
        arg=starts,
        timeout=15_000,
    )
    text = await page.text_content("#admission")
    assert text is not None
    return text


async def test_the_page_solves_the_challenge_waits_in_line_and_plays(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    en, ar = strings("en"), strings("ar")
    shots = Path(os.environ.get("MAJLIS_SCREENSHOTS") or tmp_path)
    args = ("--attack-mode", "--max-listeners", "1")
    with majlis_server(tmp_path / "data", *args) as server:
        created = server.create_space("Crowded")
        space = created["id"]
        pub = await publish(http, server.base, created["whip_url"], created["host_token"],
                            ToneTrack(TONE), name="host")  # fmt: skip
        try:
            seat = await _solved_session(http, server.base, space)  # the node is now full
            async with chromium(make_tone_wav(tmp_path / "mic.wav")) as browser:
                page = await browser.new_page()
                await page.goto(server.base + created["page_url"])
                await page.wait_for_function(
                    "document.getElementById('admission')?.textContent.length > 0", timeout=10_000
                )
                assert await page.text_content("#admission") == en["attack_mode"]
                await install_ear(page)
                await page.click("#play")
                text = await _queue_text(page, en["queue_full"])
                assert en["queue_position"].format(position=1) in text, text
                solved = await page.evaluate("window.__majlisPow")
                # Second in line, in Arabic: the note reads right to left.
                arabic = await browser.new_page(viewport={"width": 600, "height": 700})
                await arabic.goto(server.base + created["page_url"] + "?lang=ar")
                await arabic.wait_for_function("document.getElementById('admission')?.textContent")
                await arabic.click("#play")
                text = await _queue_text(arabic, ar["queue_full"])
                assert ar["queue_position"].format(position=2) in text, text
                assert await arabic.evaluate(_DIRECTION) == "rtl"
                await arabic.screenshot(path=shots / "space-waiting-ar.png", full_page=True)
                rates = await page.evaluate(_HASH_RATES)
                print(
                    f"\nPoW in Chromium: {solved['difficulty']} bits solved in "
                    f"{solved['ms']:.0f} ms ({solved['hashes']} hashes); pure JS "
                    f"{rates['js']:.0f} hashes/s, crypto.subtle.digest {rates['subtle']:.0f}/s; "
                    f"8 more 16-bit solves: mean {rates['mean_ms']:.0f} ms, "
                    f"max {rates['max_ms']:.0f} ms"
                )
                assert await page.evaluate("document.getElementById('player').paused")
                # The seat frees: the page is admitted and plays by itself.
                async with http.delete(f"{server.base}/live/{space}/sessions/{seat}") as resp:
                    assert resp.status == 204
                heard = await listen_for(page, TONE, within=20)
                assert heard.rms > 0.05, heard
                assert await page.is_hidden("#admission")
                # The Arabic page moved up to the head of the line.
                await arabic.wait_for_function(
                    "(t) => document.getElementById('admission').textContent.includes(t)",
                    arg=ar["queue_position"].format(position=1),
                    timeout=10_000,
                )
                assert await arabic.evaluate("document.getElementById('player').paused")
        finally:
            await unpublish(http, server.base, pub)


_DIRECTION = "getComputedStyle(document.getElementById('admission')).direction"

# Hashes per second of the page's pure-JS SHA-256 and of crypto.subtle.digest, on the same
# 48-byte messages, one after another (awaiting each digest, as a solver must).
_HASH_RATES = """async () => {
  // Eight 16-bit solves of distinct challenges: the spread a listener sees.
  const solves = [];
  for (let i = 0; i < 8; i++) solves.push(await MajlisPow.solve(`16.1800000000.abcdefg${i}.x`, 16));
  const hashes = solves.reduce((a, s) => a + s.hashes, 0);
  const ms = solves.map((s) => s.ms);
  const text = new TextEncoder();
  const n = 3000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await crypto.subtle.digest("SHA-256", text.encode("16.1800000000.abcdefgh.0123456789ab" + i));
  }
  const subtle = n / ((performance.now() - t0) / 1000);
  const check = MajlisPow.hex("abc") ===
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  if (!check) throw new Error("pow.js SHA-256 is wrong");
  return {
    js: hashes / (ms.reduce((a, b) => a + b, 0) / 1000),
    subtle,
    mean_ms: ms.reduce((a, b) => a + b, 0) / ms.length,
    max_ms: Math.max(...ms),
  };
}"""
