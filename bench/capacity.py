"""Listeners per edge core: an nginx edge serving LL-HLS and standard HLS, against Icecast.

One run on this machine, everything on 127.0.0.1:

1. A real origin (`majlis serve`, 32 kbit/s AAC so both servers carry the same bitrate)
   with one space and one aiortc WHIP speaker sending a tone (its own process), and one
   nginx edge from `majlis edge-config --workers 1`.
2. For N = 500, 2,000, 5,000 (listeners stay connected and the next stage adds to them):
   LL-HLS players through the edge (blocking reload + each listed part once, as hls.js),
   then, from a fresh set of processes, standard-latency players (playlist every target
   duration + each full segment once).
3. Icecast 2.4 serving 32 kbit/s Ogg/Opus from an ffmpeg feeder to the same N, with Ogg
   pages as long as the edge's parts (the same delay at the listener) and with ffmpeg's
   default 1 s pages.
4. A sweep at one N over part durations (MAJLIS_PART_FRAMES) against Icecast with the
   matching page length: the curve of cost per listener against part duration.

The servers' CPU (utime + stime of every process, children included) is read from /proc at
both ends of each window, as is the load generators' and the whole machine's: the load
generator shares the two cores, and other work on the machine is reported as "other".
Pinning (as the peers' scripts do): the edge (or Icecast) on CPU0; the origin, the speaker
and the Ogg feeder on CPU1; the load processes unpinned, since at 5,000 LL-HLS listeners
they need more than one core. The load processes use uvloop when it can be imported (it
costs them about half the CPU of plain asyncio); `CAPACITY_PYTHONPATH` adds a folder to
their import path, e.g. one made with `pip install --target DIR uvloop`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.nginx import free_port, nginx_edge
from tests.support.server import majlis_server, stop

from bench.cpu import cpu_model
from bench.procmon import Snapshot, ksoftirqd, with_children
from bench.results import update

ROOT = Path(__file__).resolve().parent.parent
NS = (500, 2000, 5000)
MAIN_FRAMES = 10  # the server's default part: 10 AAC frames = 213.3 ms
SWEEP_FRAMES = (5, 10, 20, 47)
SWEEP_N = 2000
SEGMENT_PARTS = 5
BITRATE = 32_000
WINDOW_S = float(os.environ.get("CAPACITY_WINDOW_S", "20"))
SETTLE_S = 5.0
ICECAST_SETTLE_S = 10.0
HTTP_RAMP_PER_S = 1000.0
# Icecast's listen backlog is hard-coded to 5: faster ramps drop SYNs (peers' README).
ICECAST_RAMP_PER_S = 250.0
LOAD_PROCESSES = 2
LATE_S = 1.0
SERVER_CPU = {0}
HELPER_CPU = {1}
TARGET_LL_PER_CORE = 10_000
PEERS = [ROOT.parent / "shared" / "peers", ROOT.parent.parent / "shared" / "peers"]


def _part_s(frames: int) -> float:
    return frames * 1024 / 48_000


def _hold_s(frames: int) -> float:
    # The origin holds up to three target durations; edge-config must know it.
    segment = _part_s(frames) * SEGMENT_PARTS
    return 3.0 * max(1, math.floor(segment + 0.5))


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` and of its children (nginx workers, aiortc threads)."""
    if len(os.sched_getaffinity(0)) < 2:
        return
    for proc in with_children([pid]):
        try:
            for tid in os.listdir(f"/proc/{proc}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


def _peers() -> Path:
    for path in PEERS:
        if (path / "icecast" / "icecast.xml.in").exists():
            return path
    raise FileNotFoundError("the peers' baseline folder (shared/peers) was not found")


def _load_env() -> dict[str, str]:
    extra = os.environ.get("CAPACITY_PYTHONPATH", "")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", ""), extra) if p)
    return {**os.environ, "PYTHONPATH": path}


# -- the load and its windows -------------------------------------------------------------


def _schedule(ns: tuple[int, ...], ramp_per_s: float, settle: float) -> list[dict[str, float]]:
    at = time.monotonic() + 3.0  # the load processes start and import meanwhile
    stages, before = [], 0
    for n in ns:
        w0 = at + (n - before) / ramp_per_s + settle
        stages.append({"n": n, "ramp_at": at, "w0": w0, "w1": w0 + WINDOW_S})
        at, before = w0 + WINDOW_S + 0.5, n
    return stages


def run_load(
    work: Path,
    target: tuple[str, int, str],
    style: str,
    ns: tuple[int, ...],
    groups: dict[str, list[int]],
    ramp_per_s: float,
    segment_parts: int = SEGMENT_PARTS,
) -> list[dict[str, Any]]:
    """Runs the stages; one merged window per N with the CPU of every group over it."""
    host, port, base = target
    # Icecast's 5-deep listen backlog drops SYNs under a ramp; their retransmits (1, 3, 7 s)
    # need the longer settle before every listener is in.
    stages = _schedule(ns, ramp_per_s, ICECAST_SETTLE_S if style == "icecast" else SETTLE_S)
    procs = []
    for i in range(LOAD_PROCESSES):
        share = [
            {**s, "n": s["n"] // LOAD_PROCESSES + (1 if i < s["n"] % LOAD_PROCESSES else 0),
             "ramp_per_s": ramp_per_s / LOAD_PROCESSES}
            for s in stages
        ]  # fmt: skip
        cfg = {"style": style, "host": host, "port": port, "base": base, "stages": share,
               "segment_parts": segment_parts, "late_s": LATE_S}  # fmt: skip
        cfg_path, out = work / f"load-{style}-{i}.json", work / f"result-{style}-{i}.json"
        cfg_path.write_text(json.dumps(cfg))
        out.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "bench.capacity_load", str(cfg_path), str(out)]
        procs.append((subprocess.Popen(cmd, cwd=ROOT, env=_load_env()), out))
    watched = {**groups, "load": [p.pid for p, _ in procs], "ksoftirqd": ksoftirqd()}
    cores: list[dict[str, float]] = []
    try:
        for stage in stages:
            time.sleep(max(0.0, stage["w0"] - time.monotonic()))
            first = Snapshot(watched)
            time.sleep(max(0.0, stage["w1"] - time.monotonic()))
            cores.append(Snapshot(watched).cores_used(first))
            print(f"capacity: {style} n={stage['n']:.0f} cores {cores[-1]}", flush=True)
        results = []
        for proc, out in procs:
            proc.wait(60)
            results.append(json.loads(out.read_text()))
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    return [
        _merge([r["windows"][k] for r in results], cores[k], results[0].get("event_loop", "?"))
        for k in range(len(stages))
    ]


def _merge(parts: list[dict[str, Any]], cores: dict[str, float], loop: str) -> dict[str, Any]:
    requests: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    for p in parts:
        for k, v in p["requests"].items():
            requests[k] += v
        for k, v in p["errors"].items():
            errors[k] += v
    return {
        "n": sum(p["n"] for p in parts),
        "seconds": max(p["seconds"] for p in parts),
        "requests": dict(requests),
        "errors": dict(errors),
        **{k: sum(p[k] for p in parts) for k in ("bytes_in", "media", "skipped", "late")},
        "streams_alive": sum(p["streams_alive"] for p in parts),
        "loop_lag_p99_s": max(p["loop_lag_s"].get("p99", 0.0) for p in parts),
        "part_spread_p50_s": max(p["part_spread_s"].get("p50", 0.0) for p in parts),
        "part_spread_p99_s": max(p["part_spread_s"].get("p99", 0.0) for p in parts),
        "stream_max_gap_p99_s": max(p["stream_max_gap_s"].get("p99", 0.0) for p in parts),
        "cores": cores,
        "event_loop": loop,
    }


def _row(system: str, style: str, delay_s: float, w: dict[str, Any]) -> dict[str, Any]:
    """One table row: what the server cost for what the listeners got."""
    n, dt, cores = w["n"], w["seconds"], w["cores"]
    if style == "icecast" and w["streams_alive"]:
        n = w["streams_alive"]  # the cost per listener actually served
    server = cores["server"]
    requests = sum(w["requests"].values())
    media_expected = n * dt / delay_s if style != "icecast" else 0.0
    row = {
        "system": system,
        "style": style,
        "delay_unit_ms": round(delay_s * 1000, 1),
        "listeners": w["n"],
        "served": n,
        "window_s": dt,
        "server_cores": round(server, 4),
        "listeners_per_core": round(n / server) if server > 0 else None,
        "cores_per_1000": round(server / n * 1000, 4),
        "requests_per_s": round(requests / dt, 1),
        "requests_per_listener_s": round(requests / dt / n, 3),
        "us_per_request": round(server * 1e6 / (requests / dt), 2) if requests else None,
        "bytes_per_listener_s": round(w["bytes_in"] / dt / n, 1),
        "kbps_per_listener": round(w["bytes_in"] * 8 / 1000 / dt / n, 2),
        "errors": w["errors"],
        "load_cores": cores.get("load"),
        "origin_cores": cores.get("origin"),
        "speaker_or_feeder_cores": cores.get("speaker", cores.get("feeder")),
        "ksoftirqd_cores": cores.get("ksoftirqd"),
        "machine_cores": cores["machine"],
        "other_cores": cores["other"],
        "per_core_busy": {k: v for k, v in cores.items() if re.fullmatch(r"cpu\d+", k)},
        "loop_lag_p99_s": w["loop_lag_p99_s"],
        "event_loop": w["event_loop"],
    }
    if style == "icecast":
        row |= {
            "connected": w["streams_alive"],
            "max_gap_p99_s": w["stream_max_gap_p99_s"],
            "requests_per_s": None,
            "requests_per_listener_s": None,
            "us_per_request": None,
        }
        row["client_saturated"] = w["loop_lag_p99_s"] > 0.1 or w["streams_alive"] < n
    else:
        share = w["media"] / media_expected if media_expected else 0.0
        # What a listener that keeps up asks for: LL-HLS, a blocking reload and a part per
        # part; standard, a playlist per target duration (about a segment) and a segment.
        nominal = 2 / delay_s
        us = row["us_per_request"]
        row |= {
            "nominal_requests_per_listener_s": round(nominal, 3),
            "projected_listeners_per_core": round(1e6 / (us * nominal)) if us else None,
            "media_received_share": round(share, 3),
            "skipped": w["skipped"],
            "late": w["late"],
            "part_spread_p50_s": w["part_spread_p50_s"],
            "part_spread_p99_s": w["part_spread_p99_s"],
        }
        row["client_saturated"] = w["loop_lag_p99_s"] > 0.1 or share < 0.95
    # The figure the comparisons use: the measured cost, or the cost at the nominal request
    # rate when that is higher (a starved load generator asks for less than players would).
    projected = row.get("projected_listeners_per_core")
    row["cores_per_1000_used"] = round(
        max(row["cores_per_1000"], 1000 / projected if projected else 0.0), 4
    )
    row["listeners_per_core_used"] = round(1000 / row["cores_per_1000_used"])
    return row


# -- Majlis origin + nginx edge -----------------------------------------------------------


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except OSError:
        return 0, b""


@contextmanager
def _speaker(base: str, space: dict[str, Any]) -> Iterator[subprocess.Popen[str]]:
    cmd = [sys.executable, "-m", "tests.support.publish_tone", base, space["whip_url"],
           space["speaker_token"], "440", "tone"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_load_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Location:"), f"the speaker did not publish: {line!r}"
        yield proc
    finally:
        stop(proc, grace=5)


def majlis(
    work: Path, frames: int, plan: list[tuple[str, tuple[int, ...]]]
) -> list[dict[str, Any]]:
    env = {"MAJLIS_PART_FRAMES": str(frames), "MAJLIS_SEGMENT_PARTS": str(SEGMENT_PARTS),
           "MAJLIS_AAC_BITRATE": str(BITRATE)}  # fmt: skip
    data = work / f"origin-{frames}"
    rows: list[dict[str, Any]] = []
    with majlis_server(data, env=env) as server:
        space = server.create_space("Capacity")
        playlist = server.base + space["playlist_url"].rsplit("/", 1)[0] + "/audio.m3u8"
        base = urllib.parse.urlsplit(playlist).path.rsplit("/", 1)[0] + "/"
        with _speaker(server.base, space) as speaker:
            deadline = time.monotonic() + 30
            while _get(playlist)[1].count(b"#EXTINF") < 2:
                assert time.monotonic() < deadline, "no segments at the origin"
                time.sleep(0.3)
            hold = str(_hold_s(frames))
            with nginx_edge(server.base, "--workers", "1", "--hold", hold) as edge:
                _pin(edge.process.pid, SERVER_CPU)
                _pin(server.process.pid, HELPER_CPU)
                _pin(speaker.pid, HELPER_CPU)
                port = int(edge.base.rsplit(":", 1)[1])
                groups = {"server": [edge.process.pid], "origin": [server.process.pid],
                          "speaker": [speaker.pid]}  # fmt: skip
                for style, ns in plan:
                    windows = run_load(
                        work, ("127.0.0.1", port, base), style, ns, groups, HTTP_RAMP_PER_S
                    )
                    unit = _part_s(frames) * (1 if style == "ll" else SEGMENT_PARTS)
                    rows += [_row("majlis-edge", style, unit, w) for w in windows]
                    time.sleep(2)
        # What every blocking reload and poll carries besides the audio.
        playlist_bytes = len(_get(playlist)[1])
        init_bytes = len(_get(server.base + base + "init.mp4")[1])
    for row in rows:
        row["part_ms"] = round(_part_s(frames) * 1000, 1)
        row["playlist_bytes"] = playlist_bytes
        row["init_bytes"] = init_bytes
    return rows


# -- Icecast ------------------------------------------------------------------------------


def icecast(work: Path, page_ms: float, ns: tuple[int, ...]) -> list[dict[str, Any]]:
    """Icecast as the peers' run.sh drives it (same config template, feeder and pinning)."""
    peers = _peers()
    run = work / f"icecast-{page_ms:.0f}"
    (run / "log").mkdir(parents=True, exist_ok=True)
    port = free_port()
    template = (peers / "icecast" / "icecast.xml.in").read_text()
    config = (
        template.replace("@RUN@", str(run)).replace("@PORT@", str(port))
        .replace("@CLIENTS@", "20000").replace("@BURST@", "65536")
    )  # fmt: skip
    (run / "icecast.xml").write_text(config)
    if os.geteuid() == 0:
        shutil.chown(run / "log", "icecast2", "icecast")
    pin = ["taskset", "-c"] if shutil.which("taskset") else []
    server = subprocess.Popen(
        [*pin, *(["0"] if pin else []), "icecast2", "-c", str(run / "icecast.xml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    feeder: subprocess.Popen[bytes] | None = None
    status = f"http://127.0.0.1:{port}/status-json.xsl"
    try:
        _wait(lambda: _get(status)[0] == 200, 10, "icecast did not start")
        feeder = subprocess.Popen(
            [*pin, *(["1"] if pin else []), "ffmpeg", "-nostdin", "-hide_banner",
             "-loglevel", "warning", "-re", "-f", "lavfi",
             "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "libopus", "-b:a", "32k",
             "-vbr", "off", "-application", "audio", "-ac", "1", "-f", "ogg",
             "-page_duration", str(round(page_ms * 1000)), "-content_type", "audio/ogg",
             f"icecast://source:hackme@127.0.0.1:{port}/live.opus"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: b"live.opus" in _get(status)[1], 10, "the feeder did not connect")
        time.sleep(3)
        groups = {"server": [server.pid], "feeder": [feeder.pid]}
        windows = run_load(
            work, ("127.0.0.1", port, "/live.opus"), "icecast", ns, groups, ICECAST_RAMP_PER_S
        )
    finally:
        if feeder is not None:
            stop(feeder, grace=5)
        stop(server, grace=5)
    rows = [_row("icecast", "icecast", page_ms / 1000, w) for w in windows]
    for row in rows:
        row["page_ms"] = page_ms
    return rows


def _wait(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.2)


# -- the run ------------------------------------------------------------------------------


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if a is None or b is None or not b["cores_per_1000_used"]:
        return None
    return round(a["cores_per_1000_used"] / b["cores_per_1000_used"], 2)


def measure(work: Path) -> dict[str, Any]:
    started = time.monotonic()
    main_part_ms = round(_part_s(MAIN_FRAMES) * 1000, 1)
    runs = majlis(work, MAIN_FRAMES, [("ll", NS), ("std", NS)])
    runs += icecast(work, _part_s(MAIN_FRAMES) * 1000, NS)
    runs += icecast(work, 1000.0, NS)
    sweep = [r for r in runs if r["style"] == "ll" and r["listeners"] == SWEEP_N]
    sweep += [r for r in runs if r["system"] == "icecast" and r["listeners"] == SWEEP_N]
    for frames in SWEEP_FRAMES:
        if frames != MAIN_FRAMES:
            sweep += majlis(work, frames, [("ll", (SWEEP_N,))])
            if abs(_part_s(frames) - 1.0) > 0.05:  # ~1 s pages: the 1000 ms run above
                sweep += icecast(work, _part_s(frames) * 1000, (SWEEP_N,))
    curve = []
    for frames in SWEEP_FRAMES:
        part_ms = round(_part_s(frames) * 1000, 1)
        edge = _find(sweep, system="majlis-edge", part_ms=part_ms)
        pages = [r for r in sweep if r["system"] == "icecast"]
        ice = min(pages, key=lambda r: abs(r["page_ms"] - part_ms)) if pages else None
        if edge is None:
            continue
        curve.append({
            "part_ms": part_ms,
            "edge_cores_per_1000": edge["cores_per_1000_used"],
            "edge_listeners_per_core": edge["listeners_per_core_used"],
            "edge_listeners_per_core_measured": edge["listeners_per_core"],
            "edge_us_per_request": edge["us_per_request"],
            "edge_requests_per_listener_s": edge["requests_per_listener_s"],
            "icecast_page_ms": ice["page_ms"] if ice else None,
            "icecast_cores_per_1000": ice["cores_per_1000_used"] if ice else None,
            "edge_over_icecast": _ratio(edge, ice),
            "load_cores": edge["load_cores"],
            "client_saturated": edge["client_saturated"],
        })  # fmt: skip
    verdicts = {}
    for n in NS:
        ll = _find(runs, style="ll", listeners=n)
        std = _find(runs, style="std", listeners=n)
        same = _find(runs, system="icecast", listeners=n, page_ms=_part_s(MAIN_FRAMES) * 1000)
        ref = _find(runs, system="icecast", listeners=n, page_ms=1000.0)
        verdicts[str(n)] = {
            "ll_over_icecast_same_delay": _ratio(ll, same),
            "std_over_icecast_1s_pages": _ratio(std, ref),
            "ll_over_icecast_1s_pages": _ratio(ll, ref),
            "ll_listeners_per_core": ll["listeners_per_core_used"] if ll else None,
            "ll_per_core_met": bool(ll and ll["listeners_per_core_used"] >= TARGET_LL_PER_CORE),
            "ll_not_costlier_than_icecast_met": bool(
                ll and same and ll["cores_per_1000_used"] <= same["cores_per_1000_used"]
            ),
        }
    return {
        "what": "listeners per core of one nginx edge worker serving LL-HLS and standard HLS "
        "from a Majlis origin, and of Icecast serving the same bitrate to the same listeners",
        "window_s": WINDOW_S,
        "settle_s": SETTLE_S,
        "icecast_settle_s": ICECAST_SETTLE_S,
        "bitrate_bps": BITRATE,
        "main_part_ms": main_part_ms,
        "segment_parts": SEGMENT_PARTS,
        "load_processes": LOAD_PROCESSES,
        "late_s": LATE_S,
        "targets": {
            "ll_listeners_per_core": TARGET_LL_PER_CORE,
            "ll_cost_vs_icecast_same_delay": 1.0,
        },
        "runs": runs,
        "curve": curve,
        "verdicts": verdicts,
        "cpu_model": cpu_model(),
        "bench_seconds": round(time.monotonic() - started),
    }


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="majlis-capacity-"))
    os.chmod(work, 0o755)  # the icecast2 user writes its log below it
    try:
        data = measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    update("capacity", data)
    print(json.dumps(data["verdicts"], indent=1))
    print(json.dumps(data["curve"], indent=1))
