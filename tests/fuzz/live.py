"""A running server with a live space, a real speaker and a listener that proves it keeps playing.

The speaker is a separate process (tests.support.publish_tone) sending a 1 kHz tone over
WebRTC; the listener is a thread that fetches every part in order through the preload-hint
hold, as a player does. A fuzzer checks, after its examples, that parts kept coming with no
gap and that they still carry the tone.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.client import Reply, assert_error_body, request
from tests.support.audio import decode_mp4, tone_power
from tests.support.server import RunningServer, stop

TONE = 1000.0
ROOT = Path(__file__).parents[2]
_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="p/(\d+)\.(\d+)\.m4s"')
# A part is 213 ms. A blocking request is held at most three target durations (3 s) before
# the player gets a 503: a gap shorter than that left no player's request unanswered, and
# longer gaps than a part come from two busy cores shared with other test runs.
MAX_PART_GAP_S = 3.0
# Parts (213 ms each) an FFT needs to find the tone with confidence.
MIN_PARTS = 5


@dataclass
class Listener:
    """Follows the live edge part by part until stopped; keeps what arrived and when."""

    base: str
    space_id: str
    segment_parts: int
    init: bytes = b""
    parts: list[tuple[float, bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.init = self._get("init.mp4").body
        self._thread = threading.Thread(target=self._run, name="fuzz-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _get(self, name: str) -> Reply:
        return request(self.base, "GET", f"/live/{self.space_id}/{name}", timeout=10)

    def _hint(self) -> tuple[int, int]:
        reply = self._get("audio.m3u8")
        match = _HINT.search(reply.body.decode(errors="replace"))
        if reply.status != 200 or match is None:
            raise AssertionError(f"playlist {reply.status}: {reply.body[:200]!r}")
        return int(match.group(1)), int(match.group(2))

    def _run(self) -> None:
        msn, index = self._hint()
        while not self._stop.is_set():
            try:
                reply = self._get(f"p/{msn}.{index}.m4s")
                if reply.status != 200:
                    # Fell behind the parts kept in memory, or the hold timed out: catch up.
                    self.errors.append(f"part {msn}.{index}: {reply.status}")
                    msn, index = self._hint()
                    continue
            except (OSError, AssertionError) as exc:
                self.errors.append(f"part {msn}.{index}: {exc}")
                self._stop.wait(0.1)
                continue
            self.parts.append((time.perf_counter(), reply.body))
            index += 1
            if index == self.segment_parts:
                msn, index = msn + 1, 0

    def check_since(self, since: float) -> None:
        """Parts kept coming from ``since`` to now, without a gap, and they carry the tone."""
        # A quick fuzzer ends before enough audio for an FFT has arrived: let it accumulate.
        deadline = time.perf_counter() + 5.0
        while time.perf_counter() < deadline and self._count_since(since) < MIN_PARTS:
            time.sleep(0.05)
        times = [since] + [t for t, _ in self.parts if t >= since] + [time.perf_counter()]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < MAX_PART_GAP_S, f"parts stopped for {max(gaps):.2f} s"
        recent = [data for t, data in self.parts if t >= since][-12:]
        assert len(recent) >= MIN_PARTS, f"only {len(recent)} parts since the fuzzing began"
        power = tone_power(decode_mp4(self.init + b"".join(recent)), TONE)
        assert power > 0.8, f"the {TONE:.0f} Hz tone is no longer clear: {power:.3f}"

    def _count_since(self, since: float) -> int:
        return sum(1 for t, _ in self.parts if t >= since)


@dataclass
class LiveSpace:
    server: RunningServer
    space: dict[str, Any]
    speaker: subprocess.Popen[str]
    listener: Listener
    # Opened before any fuzzer could use up this address's sessions (the fuzzers may end it).
    listener_session: str

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def id(self) -> str:
        return str(self.space["id"])

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.admin_token}"}

    def check(self, reply: Reply, sent: object, *allowed: int) -> None:
        """``expect_error``, naming what was sent and the server's log tail when it fails."""
        try:
            expect_error(reply, *allowed)
        except AssertionError as exc:
            tail = "".join(self.server.output[-40:])
            raise AssertionError(f"{exc}\nsent: {sent!r:.600}\nserver log:\n{tail}") from None

    def open_session(self, timeout: float = 15.0) -> str:
        """A new listener session, waiting out this address's session rate if it must."""
        deadline = time.monotonic() + timeout
        while True:
            reply = request(self.base, "POST", f"/live/{self.id}/sessions", b"{}")
            if reply.status == 201:
                return str(reply.json()["session"])
            assert reply.status == 429 and time.monotonic() < deadline, (reply.status, reply.body)
            time.sleep(min(2.0, float(reply.headers.get("retry-after", "1"))))

    def log_mark(self) -> int:
        return len(self.server.output)

    def assert_healthy_since(self, mark: int, started: float) -> None:
        """No traceback in the server log since ``mark``, and the space kept playing."""
        assert self.server.process.poll() is None, self.server.log()
        log = "".join(self.server.output[mark:])
        for bad in ("Traceback", "unhandled error", "Task exception was never retrieved"):
            assert bad not in log, log
        assert self.speaker.poll() is None, "the speaker process died"
        self.listener.check_since(started)


# Rates "per second/burst" far above what the fuzzers send from their one address: the
# examples must reach the parsers, not the rate limiter that guards them.
_LIMITS = {
    f"--{who}{scope}-rate": "100000/100000"
    for who in ("api", "listener")
    for scope in ("", "-prefix")
}


def generous_limits() -> list[str]:
    """The rate-limit flags this server knows (older builds have none)."""
    cmd = [sys.executable, "-m", "majlis.cli", "serve", "--help"]
    usage = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout
    return [part for flag, value in _LIMITS.items() if flag in usage for part in (flag, value)]


def start_speaker(server: RunningServer, space: dict[str, Any]) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "tests.support.publish_tone", server.base,
        space["whip_url"], space["speaker_token"], str(TONE), "tone",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("Location: "):
        stop(proc, grace=2)
        raise AssertionError(f"speaker did not publish: {line}{proc.stdout.read()}")
    # Nothing reads its output after this: drain it so the pipe can never fill.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc


def wait_for_parts(
    server: RunningServer, space_id: str, segments: int = 1, timeout: float = 15.0
) -> None:
    """Poll until the space has at least ``segments`` complete segments."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        reply = request(server.base, "GET", f"/live/{space_id}/state.json")
        if reply.status == 200 and reply.json()["segments"] >= segments:
            return
        last = f"{reply.status} {reply.body[:200]!r}"
        time.sleep(0.1)
    raise AssertionError(f"no segment in {timeout} s: {last}")


def expect_error(reply: Reply, *allowed: int) -> None:
    """A 4xx refusal with the JSON error body (or one of ``allowed`` statuses)."""
    assert reply.status < 500 or reply.status in allowed, (reply.status, reply.body[:300])
    if reply.status >= 400:
        assert_error_body(reply)
