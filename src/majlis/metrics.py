"""Prometheus text metrics: every series Majlis exports is named here.

Names follow Prometheus conventions: one `majlis_` prefix, base units, `_total` only on
counters, and a `space` label only on series of live spaces (removed when a space ends).
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Iterable

from majlis.rooms.pipeline import SEGMENT_WRITE_BUCKETS_S
from majlis.rooms.registry import SpaceRegistry
from majlis.rooms.space import Status

_TICKS = os.sysconf("SC_CLK_TCK")

# Live media responses, by kind (a fixed set): with caching edges in front, each kind grows
# by about one per edge per part, whatever the number of listeners behind the edges.
LIVE_KINDS = ("playlist", "blocking_playlist", "init", "part", "segment", "other")


class HttpCounters:
    """Responses sent, by status code (a bounded label: at most the codes HTTP defines) and,
    for /live/, by kind. One per server, held by the web application."""

    def __init__(self) -> None:
        self.by_status: dict[int, int] = defaultdict(int)
        self.live_by_kind: dict[str, int] = defaultdict(int)

    def count(self, status: int, live_kind: str | None) -> None:
        self.by_status[status] += 1
        if live_kind is not None:
            self.live_by_kind[live_kind] += 1


def _http_responses(counters: HttpCounters) -> list[str]:
    return [
        _line("majlis_http_responses_total", n, {"code": str(code)})
        for code, n in sorted(counters.by_status.items())
    ]


def _segment_write_histogram(spaces: SpaceRegistry) -> list[str]:
    """One histogram over every space of this node (ended ones included, so it only grows)."""
    counts = [0] * (len(SEGMENT_WRITE_BUCKETS_S) + 1)
    total_s = 0.0
    for space in spaces.all():
        stats = space.pipeline.stats
        counts = [a + b for a, b in zip(counts, stats.segment_writes, strict=True)]
        total_s += stats.segment_write_seconds
    name = "majlis_segment_write_seconds"
    lines, cumulative = [], 0
    for bound, n in zip([*SEGMENT_WRITE_BUCKETS_S, None], counts, strict=True):
        cumulative += n
        le = "+Inf" if bound is None else f"{bound:g}"
        lines.append(_line(f"{name}_bucket", cumulative, {"le": le}))
    return [*lines, _line(f"{name}_sum", total_s), _line(f"{name}_count", cumulative)]


def _proc_cpu_seconds(stat_path: str) -> float:
    try:
        with open(stat_path, encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields after the command name: utime and stime are the 12th and 13th.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def thread_group(name: str) -> str:
    """Where a thread's CPU goes: the event loop carries ICE, DTLS, SRTP, RTP and HTTP."""
    if name == "MainThread":
        return "loop"
    if name.endswith("-decoder"):
        return "decode"
    if name == "majlis-mix":
        return "mix_encode_package"
    if name.startswith("majlis-disk") or name.startswith("majlis-db"):
        return "disk"
    return "other"


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of the threads alive now, by group (Linux /proc)."""
    groups: dict[str, float] = defaultdict(float)
    for thread in threading.enumerate():
        tid = thread.native_id
        if tid is None:
            continue
        groups[thread_group(thread.name)] += _proc_cpu_seconds(f"/proc/self/task/{tid}/stat")
    return dict(groups)


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def render(spaces: SpaceRegistry, counters: HttpCounters) -> str:
    live = [s for s in spaces.all() if s.status is Status.LIVE]
    out: list[str] = []
    out += _family(
        "majlis_spaces_live", "gauge", "Spaces currently live on this node.",
        [_line("majlis_spaces_live", len(live))],
    )  # fmt: skip
    out += _family(
        "majlis_speakers", "gauge", "Speakers publishing audio, per live space.",
        [_line("majlis_speakers", len(s.speakers), {"space": s.id}) for s in live],
    )  # fmt: skip
    out += _family(
        "majlis_listeners", "gauge",
        "Listeners now, per live space: sessions seen in the presence window, bots excluded.",
        [_line("majlis_listeners", s.listeners.concurrent(s.clock.wall()), {"space": s.id})
         for s in live],
    )  # fmt: skip
    out += _family(
        "majlis_encoder_lag_seconds", "gauge",
        "How far the latest mix-and-encode tick ran behind its deadline, per live space.",
        [_line("majlis_encoder_lag_seconds", s.pipeline.stats.lag_s, {"space": s.id})
         for s in live],
    )  # fmt: skip
    out += _family(
        "majlis_segment_write_seconds", "histogram",
        "Seconds from a segment's close to its file being durable on disk.",
        _segment_write_histogram(spaces),
    )  # fmt: skip
    out += _family(
        "majlis_http_responses_total", "counter", "HTTP responses sent, by status code.",
        _http_responses(counters),
    )  # fmt: skip
    out += _family(
        "majlis_live_responses_total", "counter",
        "Responses to /live/ requests, by kind (blocking_playlist: _HLS_msn reloads).",
        [_line("majlis_live_responses_total", counters.live_by_kind[k], {"kind": k})
         for k in LIVE_KINDS],
    )  # fmt: skip
    out += _family(
        "majlis_pipeline_cpu_seconds_total", "counter",
        "CPU seconds spent decoding, mixing, encoding and packaging, per live space.",
        [_line("majlis_pipeline_cpu_seconds_total", s.pipeline.stats.cpu_seconds, {"space": s.id})
         for s in live],
    )  # fmt: skip
    out += _family(
        "majlis_decode_cpu_seconds_total", "counter",
        "CPU seconds spent decoding the speakers' Opus (on the pipeline thread), per live space.",
        [_line("majlis_decode_cpu_seconds_total", s.pipeline.stats.decode.cpu_seconds,
               {"space": s.id}) for s in live],
    )  # fmt: skip
    out += _family(
        "majlis_decode_errors_total", "counter",
        "Speaker packets that could not be decoded or were refused, per live space.",
        [_line("majlis_decode_errors_total",
               s.pipeline.stats.decode.errors + s.pipeline.stats.decode.dropped, {"space": s.id})
         for s in live],
    )  # fmt: skip
    out += _family(
        "majlis_pipeline_late_ticks_total", "counter",
        "Mixer ticks that ran more than one tick late, per live space.",
        [_line("majlis_pipeline_late_ticks_total", s.pipeline.stats.late_ticks, {"space": s.id})
         for s in live],
    )  # fmt: skip
    out += _family(
        "majlis_pipeline_max_lag_seconds", "gauge",
        "Largest delay of a mixer tick behind its clock deadline, per live space.",
        [_line("majlis_pipeline_max_lag_seconds", s.pipeline.stats.max_lag_s, {"space": s.id})
         for s in live],
    )  # fmt: skip
    out += _family(
        "majlis_thread_cpu_seconds", "gauge",
        "CPU seconds used by the threads alive now, by job (loop = WebRTC transport + HTTP).",
        [_line("majlis_thread_cpu_seconds", v, {"group": k})
         for k, v in sorted(thread_cpu_seconds().items())],
    )  # fmt: skip
    out += _family(
        "process_cpu_seconds_total", "counter", "Total user and system CPU time of the process.",
        [_line("process_cpu_seconds_total", _proc_cpu_seconds("/proc/self/stat"))],
    )  # fmt: skip
    return "\n".join(out) + "\n"
