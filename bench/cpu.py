"""Server CPU per minute of a live space with 1, 3 and 10 WebRTC speakers.

Each speaker count gets a fresh `majlis serve` process and a load generator in a process of
its own (`python -m bench.cpu publish …`: aiortc tone publishers, one per speaker), so
neither the publishers' Opus encoding nor this measuring loop lands in the server's
figures. The server's `/metrics` is read at both ends of a steady window after a warm-up:
process CPU, and CPU per thread group (the event loop carries aiortc's ICE, DTLS, SRTP and
RTP work and HTTP; aiortc decodes Opus on one thread per track; the mixer, AAC encoder and
packager share the `majlis-mix` thread). When the 10-speaker targets are missed, py-spy
samples the server and the profile's heaviest frames are written down with the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.results import update

SPEAKERS = (1, 3, 10)
WARMUP_S = 5.0
WINDOW_S = 45.0
PROFILE_S = 20
# Targets for 10 speakers, in CPU seconds per minute: 50 % and 10 % of one core.
TARGET_SERVER = 30.0
TARGET_MEDIA = 6.0
GROUPS = ("loop", "decode", "mix_encode_package", "disk", "other")
# Quiet enough that ten of them stay under the mixer's soft-limiter knee.
TONE_AMPLITUDE = 0.06
PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
_TICKS = os.sysconf("SC_CLK_TCK")
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", re.M)


def tone_frequencies(count: int) -> list[float]:
    # 110 Hz apart: no tone sits on another's harmonic closely enough to confuse an FFT.
    return [300.0 + 110.0 * i for i in range(count)]


# -- /proc ----------------------------------------------------------------------------------


def process_cpu_seconds(pid: int, thread: int | None = None) -> float:
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path, encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent doing anything but idling, since boot."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICKS


# -- the server's metrics -------------------------------------------------------------------


def scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {name + labels: float(value) for name, labels, value in _SAMPLE.findall(text)}


@dataclass(frozen=True, slots=True)
class Reading:
    at: float  # perf_counter()
    metrics: dict[str, float]
    loadgen: float
    machine: float
    bench: float

    @classmethod
    def take(cls, base: str, loadgen_pid: int) -> Reading:
        return cls(
            time.perf_counter(),
            scrape(base),
            process_cpu_seconds(loadgen_pid),
            machine_busy_seconds(),
            time.process_time(),
        )


def _group(metrics: dict[str, float], group: str) -> float:
    return metrics.get(f'majlis_thread_cpu_seconds{{group="{group}"}}', 0.0)


def _sum(metrics: dict[str, float], family: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(family + "{"))


def _per_minute(seconds: float, window: float) -> float:
    return round(seconds * 60.0 / window, 2)


def figures(a: Reading, b: Reading) -> dict[str, Any]:
    window = b.at - a.at
    server = b.metrics["process_cpu_seconds_total"] - a.metrics["process_cpu_seconds_total"]
    groups = {g: _group(b.metrics, g) - _group(a.metrics, g) for g in GROUPS}
    # Opus is decoded on the mix thread (majlis.media.opusinput), which counts it apart;
    # aiortc's decoder threads only decode other codecs.
    in_mix = _sum(b.metrics, "majlis_decode_cpu_seconds_total") - _sum(
        a.metrics, "majlis_decode_cpu_seconds_total"
    )
    groups["decode"] += in_mix
    groups["mix_encode_package"] = max(groups["mix_encode_package"] - in_mix, 0.0)
    loadgen = b.loadgen - a.loadgen
    bench = b.bench - a.bench
    other = (b.machine - a.machine) - server - loadgen - bench
    late = [v for k, v in b.metrics.items() if k.startswith("majlis_pipeline_late_ticks_total")]
    late_before = [
        v for k, v in a.metrics.items() if k.startswith("majlis_pipeline_late_ticks_total")
    ]
    lag = [v for k, v in b.metrics.items() if k.startswith("majlis_pipeline_max_lag_seconds")]
    return {
        "window_s": round(window, 2),
        "server": _per_minute(server, window),
        **{g: _per_minute(v, window) for g, v in groups.items()},
        "media": _per_minute(groups["decode"] + groups["mix_encode_package"], window),
        "loadgen": _per_minute(loadgen, window),
        "rest_of_machine": _per_minute(max(other, 0.0), window),
        "late_ticks": int(sum(late) - sum(late_before)),
        "max_tick_lag_s": round(max(lag, default=0.0), 4),
    }


# -- one run --------------------------------------------------------------------------------


def _mixed_tones(base: str, space: dict[str, Any], freqs: list[float]) -> dict[str, float]:
    """Share of the mix's energy at each speaker's tone, over the last two segments."""
    from tests.support.audio import decode_mp4, tone_power

    live = base + space["playlist_url"].rsplit("/", 1)[0]
    with urllib.request.urlopen(base + space["playlist_url"], timeout=10) as resp:
        segments = re.findall(r"^s/(\d+)\.m4s$", resp.read().decode(), re.M)
    media = _get(live + "/init.mp4") + b"".join(_get(f"{live}/s/{n}.m4s") for n in segments[-2:])
    samples = decode_mp4(media)
    return {f"{f:g}": round(tone_power(samples, f), 3) for f in freqs}


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: bytes = resp.read()
        return data


def _start_loadgen(base: str, space: dict[str, Any], count: int) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "bench.cpu", "publish",
        base, space["whip_url"], space["speaker_token"], str(count),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the load generator bounds its own wait for connections
    if line.strip() != "ready":
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"load generator did not connect {count} publishers: {line!r}")
    return proc


def _stop_loadgen(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()  # tells it to unpublish and exit
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def measure(count: int, workdir: Path, profile: bool) -> dict[str, Any]:
    from tests.support.server import majlis_server

    with majlis_server(workdir / f"data-{count}") as server:
        space = server.create_space(f"CPU bench, {count} speakers")
        loadgen = _start_loadgen(server.base, space, count)
        try:
            speakers = scrape(server.base).get(f'majlis_speakers{{space="{space["id"]}"}}', 0)
            time.sleep(WARMUP_S)  # let jitter buffers and input FIFOs settle
            before = Reading.take(server.base, loadgen.pid)
            time.sleep(WINDOW_S)
            after = Reading.take(server.base, loadgen.pid)
            result: dict[str, Any] = {"speakers": count, "speakers_on_stage": int(speakers)}
            result |= figures(before, after)
            result["tone_share"] = _mixed_tones(server.base, space, tone_frequencies(count))
            if profile and _missed(result):
                result["profile"] = record_profile(server.process.pid, count)
        finally:
            _stop_loadgen(loadgen)
    return result


def _missed(run: dict[str, Any]) -> bool:
    return bool(run["server"] > TARGET_SERVER or run["media"] > TARGET_MEDIA)


# -- profile --------------------------------------------------------------------------------


def record_profile(pid: int, count: int) -> dict[str, Any]:
    """Sample the server with py-spy; return the heaviest frames by self and total time."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    PROFILE_DIR.mkdir(exist_ok=True)
    out = PROFILE_DIR / f"server-{count}-speakers.txt"
    cmd = [spy, "record", "-p", str(pid), "-d", str(PROFILE_S), "-r", "100",
           "--threads", "--format", "raw", "-o", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROFILE_S + 30)
    if done.returncode != 0 or not out.exists():
        return {"error": f"py-spy failed: {done.stderr.strip()[-300:]}"}
    return {"file": str(out.relative_to(PROFILE_DIR.parent.parent)), **summarize(out)}


def _thread_name(frame: str) -> str:
    # "thread (21351): asyncio_0" → "asyncio": one name per pool, not per worker.
    name = frame.split(":", 1)[-1].strip()
    return re.sub(r"[_-]?\d+$", "", name) or frame


_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
# py-spy here samples threads blocked in a lock or in epoll as if they ran; a sample whose
# innermost Python frame is one of these blocking waits is a thread waiting, not working.
_WAITS = {
    ("Condition.wait", "threading.py"),
    ("Event.wait", "threading.py"),
    ("Thread.join", "threading.py"),
    ("EpollSelector.select", "selectors.py"),
    ("_worker", "concurrent/futures/thread.py"),
}


def _frame(text: str) -> tuple[str, str]:
    m = _FRAME.match(text)
    if m is None:
        return text, ""
    func, path = m.groups()
    return func, re.sub(r"^.*/(site-packages|python3\.\d+|src)/", "", path)


def _area(path: str) -> str:
    """A coarse owner for a source file: the top package, split for the event loop."""
    if path.startswith("asyncio/") or path in ("selectors.py", "threading.py"):
        return "asyncio/stdlib"
    top = path.split("/", 1)[0].removesuffix(".py")
    return top or "native"


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    own: Counter[str] = Counter()
    per_thread: dict[str, Counter[str]] = {}
    total: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
        calls = [_frame(f) for f in frames if not f.startswith(("thread ", "process "))]
        if not calls:
            continue
        if calls[-1] in _WAITS:
            waiting += count
            continue
        samples += count
        threads[_thread_name(thread)] += count
        func, file = calls[-1]
        own[f"{func} ({file})"] += count
        per_thread.setdefault(_thread_name(thread), Counter())[f"{func} ({file})"] += count
        areas[_area(file)] += count
        for name in {f"{f} ({p})" for f, p in calls}:
            total[name] += count

    def share(counter: Counter[str], n: int) -> list[list[Any]]:
        return [[k, round(v / samples, 3)] for k, v in counter.most_common(n)]

    return {
        "samples": samples,
        "waiting_samples_left_out": waiting,
        "seconds": PROFILE_S,
        "self_by_area": share(areas, 10),
        "self_top": share(own, top),
        "total_top": share(total, top * 2),
        "threads": share(threads, 8),
        "by_thread": {
            name: [[k, round(v / sum(c.values()), 3)] for k, v in c.most_common(5)]
            for name, c in per_thread.items()
        },
    }


# -- decoding, apart from the server ------------------------------------------------------


def _opus_frames(count: int = 50, browser_like: bool = False) -> list[bytes]:
    """20 ms Opus frames as the load generator's aiortc publishers send them (stereo,
    aiortc's 96 kbit/s setting), or as a browser sends a microphone (mono, 32 kbit/s)."""
    import fractions

    import av
    import numpy as np
    from aiortc.codecs.opus import OpusEncoder

    encoder = _BrowserLikeOpus() if browser_like else OpusEncoder()
    frames: list[bytes] = []
    for i in range(count):
        t = (np.arange(960) + i * 960) / 48_000
        pcm = (TONE_AMPLITUDE * np.sin(2 * np.pi * 300 * t) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = i * 960
        frame.time_base = fractions.Fraction(1, 48_000)
        frames += encoder.encode(frame)[0]
    return frames


class _BrowserLikeOpus:
    def __init__(self) -> None:
        import av

        self.codec: Any = av.CodecContext.create("libopus", "w")
        self.codec.bit_rate = 32_000
        self.codec.format = "s16"
        self.codec.layout = "mono"
        self.codec.sample_rate = 48_000
        self.codec.options = {"application": "voip"}

    def encode(self, frame: Any) -> tuple[list[bytes], int]:
        return [bytes(p) for p in self.codec.encode(frame)], 0


def _decode_only(frames: list[bytes], threads: int, seconds: float) -> float:
    """CPU seconds of ``threads`` threads that each decode one stream paced at 50 frames/s."""
    import threading

    from aiortc.codecs.opus import OpusDecoder
    from aiortc.jitterbuffer import JitterFrame

    used: list[float] = []

    def work(offset: float) -> None:
        decoder = OpusDecoder()
        start, cpu0, k = time.perf_counter() + offset, time.thread_time(), 0
        while time.perf_counter() - start < seconds:
            decoder.decode(JitterFrame(frames[k % len(frames)], k * 960))
            k += 1
            time.sleep(max(0.0, start + k * 0.02 - time.perf_counter()))
        used.append(time.thread_time() - cpu0)

    pool = [threading.Thread(target=work, args=(0.02 * i / threads,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(used)


def _decode_batched(frames: list[bytes], streams: int, seconds: float) -> float:
    """CPU seconds of one thread that decodes a frame of every stream back to back per 20 ms."""
    from aiortc.codecs.opus import OpusDecoder
    from aiortc.jitterbuffer import JitterFrame

    decoders = [OpusDecoder() for _ in range(streams)]
    used: list[float] = []

    def work() -> None:
        start, cpu0, k = time.perf_counter(), time.thread_time(), 0
        while time.perf_counter() - start < seconds:
            for decoder in decoders:
                decoder.decode(JitterFrame(frames[k % len(frames)], k * 960))
            k += 1
            time.sleep(max(0.0, start + k * 0.02 - time.perf_counter()))
        used.append(time.thread_time() - cpu0)

    import threading

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return used[0]


async def _decode_and_hand_off(frames: list[bytes], threads: int, seconds: float) -> float:
    """The same through aiortc's own decoder thread, which hands every frame to the loop."""
    import queue
    import threading

    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from aiortc.rtcrtpreceiver import decoder_worker

    codec = RTCRtpCodecParameters(
        mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111
    )
    loop = asyncio.get_running_loop()
    inputs: list[queue.Queue[Any]] = [queue.Queue() for _ in range(threads)]
    outputs: list[asyncio.Queue[Any]] = [asyncio.Queue() for _ in range(threads)]
    pool = [
        threading.Thread(target=decoder_worker, args=(loop, i, o, threading.Event()))
        for i, o in zip(inputs, outputs, strict=True)
    ]
    for thread in pool:
        thread.start()

    async def drain(q: asyncio.Queue[Any]) -> None:
        while await q.get() is not None:
            pass

    drains = [asyncio.create_task(drain(q)) for q in outputs]
    before = sum(_thread_cpu(t) for t in pool)
    start, k = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        # Speakers' packets arrive spread over the 20 ms, not all at once.
        for i, q in enumerate(inputs):
            due = start + (k + i / threads) * 0.02
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            q.put((codec, JitterFrame(frames[k % len(frames)], k * 960)))
        k += 1
    used = sum(_thread_cpu(t) for t in pool) - before
    for q in inputs:
        q.put(None)
    await asyncio.gather(*drains)
    return used


def _thread_cpu(thread: Any) -> float:
    return process_cpu_seconds(os.getpid(), thread.native_id)


def decoder_cost(threads: int = 10, seconds: float = 8.0) -> dict[str, Any]:
    """Server-free CPU of decoding ``threads`` speakers: libopus alone, then as aiortc does."""
    frames = _opus_frames()
    alone = _decode_only(frames, threads, seconds)
    handed = asyncio.run(_decode_and_hand_off(frames, threads, seconds))
    batched = _decode_batched(frames, threads, seconds)
    browser = _opus_frames(browser_like=True)
    browser_alone = _decode_only(browser, threads, seconds)
    return {
        "speakers": threads,
        "seconds": seconds,
        "opus_kbps": _kbps(frames),
        "decode_only": _per_minute(alone, seconds),
        "aiortc_decoder_thread": _per_minute(handed, seconds),
        "batched_one_thread": _per_minute(batched, seconds),
        "browser_like_opus_kbps": _kbps(browser),
        "browser_like_decode_only": _per_minute(browser_alone, seconds),
    }


def _kbps(frames: list[bytes]) -> float:
    return round(sum(map(len, frames)) * 8 / (len(frames) * 0.02) / 1000, 1)


# -- load generator (its own process) -------------------------------------------------------


async def _publish_many(base: str, whip_url: str, token: str, count: int) -> None:
    import aiohttp
    from tests.support.whip import ToneTrack, publish, unpublish

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        pubs = []
        for i, freq in enumerate(tone_frequencies(count)):
            track = ToneTrack(freq, TONE_AMPLITUDE)
            pubs.append(await publish(http, base, whip_url, token, track, name=f"s{i}"))
        deadline = time.monotonic() + 20
        while any(p.pc.connectionState != "connected" for p in pubs):
            if time.monotonic() > deadline:
                states = [p.pc.connectionState for p in pubs]
                print(f"not connected: {states}", flush=True)
                return
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        # Runs until the bench closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for pub in pubs:
            await unpublish(http, base, pub)


def _run_all() -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="majlis-bench-cpu-") as tmp:
        for count in SPEAKERS:
            run = measure(count, Path(tmp), profile=count == max(SPEAKERS))
            print(json.dumps(run), flush=True)
            runs.append(run)
    decoding = decoder_cost()
    print(json.dumps({"decoder_cost": decoding}), flush=True)
    biggest = runs[-1]
    slope = (biggest["server"] - runs[0]["server"]) / (biggest["speakers"] - runs[0]["speakers"])
    return {
        "what": "server CPU seconds per minute of one live space (100 % of one core = 60)",
        "warmup_s": WARMUP_S,
        "cpu_model": cpu_model(),
        "runs": runs,
        "per_extra_speaker": round(slope, 2),
        "decoder_cost": decoding,
        "targets": {
            "speakers": max(SPEAKERS),
            "server": TARGET_SERVER,
            "media": TARGET_MEDIA,
        },
        "met": {
            "server": biggest["server"] <= TARGET_SERVER,
            "media": biggest["media"] <= TARGET_MEDIA,
        },
    }


def main() -> None:
    data = _run_all()
    update("cpu", data)
    for run in data["runs"]:
        print(
            f"cpu, {run['speakers']:>2} speakers: server {run['server']} CPU-s/min "
            f"(loop {run['loop']}, decode {run['decode']}, "
            f"mix+encode+package {run['mix_encode_package']}); load generator {run['loadgen']}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        base, whip_url, token, count = sys.argv[2:6]
        asyncio.run(_publish_many(base, whip_url, token, int(count)))
    else:
        main()
