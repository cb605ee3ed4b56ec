"""Renders docs/benchmarks.md from bench/results.json (`python -m bench report`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.results import load

PAGE = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

INTRO = """\
# Benchmarks

What one origin costs and how fast it is, measured on the real server: a `majlis serve`
process on 127.0.0.1, real aiortc WebRTC publishers, real HTTP clients, audio proved by
decoding it and finding the tones with an FFT. Every figure below comes from
`bench/results.json`, written by the last run; this page is rendered from it.

- **Machine:** {machine}.
- The cores are shared with other work (builds, browsers, other tests), so each run also
  records how busy the rest of the machine was while it measured.
- **Reproduce:** `make bench` runs everything inside a loopback-only network namespace and
  rewrites `bench/results.json` and this page. `make bench ARGS="cpu"` (or
  `bash scripts/test.sh --bench cpu`) runs one benchmark (`edge_latency`, `cpu`, `ear`,
  `flood`, `capacity`);
  `.venv/bin/python -m bench report` only re-renders this page.
- Percentiles are numpy's (linear interpolation between the nearest ranks).
"""


def _verdict(met: bool | None) -> str:
    return "—" if met is None else ("met" if met else "**missed**")


def _s(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f} s" if isinstance(value, int | float) else "—"


def _ms(value: Any) -> str:
    return f"{value * 1000:.0f} ms" if isinstance(value, int | float) else "—"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _measured(section: dict[str, Any]) -> str:
    return f"Measured {section.get('measured_at', '?')}."


# -- edge latency ---------------------------------------------------------------------------


def edge_latency(data: dict[str, Any]) -> list[str]:
    lat = data["latency_s"]
    bd = data["breakdown_s"]
    held = data["tick_to_held_client_s"]
    pos = data["onset_position_in_part_s"]
    out = [
        "## Latency at the HTTP edge",
        "",
        "A WHIP publisher (aiortc) sends a 1000 Hz tone that switches on for about 1 s and off "
        "for about 1.5 s, "
        f"{data['onsets_published']} times. In the same process, an HTTP client follows the "
        "live edge as an LL-HLS player does: a blocking playlist reload "
        "(`_HLS_msn`/`_HLS_part`) and the preload-hint part request, both held open by the "
        "server, then each part through one running AAC decoder. **Latency** = the instant the "
        "first part holding a tone onset has arrived − the instant the publisher's track "
        "handed the first tone frame to aiortc; both from the same `perf_counter()`.",
        "",
        *_table(
            ["", "p50", "p95", "max", "min", "target", "verdict"],
            [
                [
                    f"tone onset → part at the client ({lat.get('count', 0)} onsets)",
                    _s(lat.get("p50")),
                    _s(lat.get("p95")),
                    _s(lat.get("max")),
                    _s(lat.get("min")),
                    f"p95 ≤ {data['target_p95_s']} s",
                    _verdict(data.get("met")),
                ]
            ],
        ),
        "",
        "Where the time goes. The onset's sample position in the decoded stream and the "
        "playlist's PROGRAM-DATE-TIME place it on the server's mixer clock (the pipeline "
        "labels mixer sample *s* with wall time `start + s/48000`, and its 20 ms tick *k* "
        "runs at `start + k·20 ms`), so each latency splits into three measured spans:",
        "",
        *_table(
            ["span", "p50", "p95", "max"],
            [
                [name, _ms(bd[key].get("p50")), _ms(bd[key].get("p95")), _ms(bd[key].get("max"))]
                for name, key in (
                    (
                        "publisher → mixer tick that took the onset (Opus, RTP, aiortc jitter "
                        "buffer, decode, speaker input buffer)",
                        "ingest",
                    ),
                    (
                        "mixer tick → tick that completes the part (rest of the part + the AAC "
                        "encoder's two-frame lookahead)",
                        "part_fill",
                    ),
                    (
                        "that tick → part at the client (mix thread, encode, queue to the event "
                        "loop, HTTP)",
                        "delivery",
                    ),
                )
            ],
        ),
        "",
        f"Onsets fell {_ms(pos.get('min'))}–{_ms(pos.get('max'))} into their part "
        f"(median {_ms(pos.get('p50'))}; parts are {data['part_duration_s'] * 1000:.1f} ms). "
        "The AAC encoder (FFmpeg's native one through PyAV) hands out an access unit only "
        "once two more frames (42.7 ms) of audio went in; that is part of every part's wait.",
        "",
        "**Parts reach a held client** a median "
        f"{_ms(held.get('p50'))} (p95 {_ms(held.get('p95'))}, max {_ms(held.get('max'))}) "
        f"after the mixer tick that completes them was due, over {held.get('count', 0)} parts "
        "whose preload-hint request was waiting before that tick.",
        "",
        f"Checks: {data['onsets_verified_by_fft']} of {data['onsets_measured']} onsets are "
        "followed by 100 ms that an FFT finds to be ≥ 90 % the 1000 Hz tone; "
        f"{data.get('tone_gaps', 0)} drop-outs (5 ms windows without the tone) inside the "
        f"tone's first 0.8 s; {data['parts_received']} parts received, "
        f"{data['parts_not_held']} of them not through a held request, "
        f"{data['request_failures']} failed requests.",
        *_busy_note(data),
        "",
        _measured(data),
    ]
    return out


def _busy_note(data: dict[str, Any]) -> list[str]:
    busy = data.get("rest_of_machine_cores")
    if busy is None:
        return []
    return [
        "",
        f"While it ran, other work on the machine used {busy:.2f} cores on average "
        "(the server, the bench and the publisher not counted).",
    ]


# -- cpu ------------------------------------------------------------------------------------


def _pct(cpu_s_per_min: float) -> str:
    return f"{cpu_s_per_min:.1f} ({cpu_s_per_min / 60 * 100:.0f} %)"


def cpu(data: dict[str, Any]) -> list[str]:
    targets = data["targets"]
    runs = data["runs"]
    out = [
        "## Server CPU per minute of a live space",
        "",
        "One fresh server per speaker count; each speaker is an aiortc WHIP publisher sending "
        "its own tone from a separate load-generator process. After a "
        f"{data['warmup_s']:.0f} s warm-up, the server's `/metrics` "
        "(`process_cpu_seconds_total` and `majlis_thread_cpu_seconds` by thread group) is "
        f"read at both ends of a {runs[0]['window_s']:.0f} s window. Figures are CPU seconds "
        "per minute (60 = one whole core) and, in brackets, percent of one core.",
        "",
        "- **whole server**: the process. **WebRTC + HTTP**: the event-loop thread, where "
        "aiortc runs ICE, DTLS, SRTP and RTP in Python and aiohttp serves HTTP. **decode**: "
        "the speakers' Opus, decoded on the `majlis-mix` thread (timed there and exported as "
        "`majlis_decode_cpu_seconds_total`), plus aiortc's decoder threads (other codecs "
        "only). **mix + encode + package**: the rest of the `majlis-mix` thread (mixer, AAC "
        "encoder, CMAF packager). **media** = decode + mix + encode + package.",
        "- Every run checks the mix: each speaker's tone holds its share of the last two "
        "segments' energy (FFT).",
        "",
        *_table(
            [
                "speakers",
                "whole server",
                "WebRTC + HTTP",
                "decode",
                "mix + encode + package",
                "media",
                "load generator",
                "rest of machine",
                "late ticks",
                "tones in mix",
            ],
            [
                [
                    str(r["speakers"]),
                    _pct(r["server"]),
                    _pct(r["loop"]),
                    _pct(r["decode"]),
                    _pct(r["mix_encode_package"]),
                    _pct(r["media"]),
                    _pct(r["loadgen"]),
                    _pct(r["rest_of_machine"]),
                    str(r["late_ticks"]),
                    _tones(r),
                ]
                for r in runs
            ],
        ),
        "",
        *_table(
            ["target (10 speakers)", "limit", "measured", "verdict"],
            [
                [
                    "whole server ≤ 50 % of one core",
                    f"{targets['server']:.0f} CPU-s/min",
                    _pct(runs[-1]["server"]),
                    _verdict(data["met"]["server"]),
                ],
                [
                    "decode + mix + encode + package ≤ 10 %",
                    f"{targets['media']:.0f} CPU-s/min",
                    _pct(runs[-1]["media"]),
                    _verdict(data["met"]["media"]),
                ],
            ],
        ),
        "",
        f"Each speaker beyond the first adds about {data['per_extra_speaker']:.1f} CPU-s/min "
        "to the whole server (slope from 1 to 10 speakers).",
    ]
    if decoding := data.get("decoder_cost"):
        out += ["", *_decoding(decoding)]
    profile = next((r["profile"] for r in runs if "profile" in r), None)
    if profile:
        out += ["", *_profile(profile)]
    out += ["", _measured(data)]
    return out


def _decoding(d: dict[str, Any]) -> list[str]:
    handoff = d["aiortc_decoder_thread"] / d["decode_only"] - 1 if d["decode_only"] else 0.0
    return [
        f"**Decoding, measured apart from the server** ({d['speakers']} streams of 20 ms Opus "
        f"frames, each paced at 50 frames/s on its own thread, {d['seconds']:.0f} s, no "
        f"network): libopus through PyAV alone costs {_pct(d['decode_only'])} CPU-s/min for "
        f"the load generator's {d['opus_kbps']:.0f} kbit/s stereo stream and "
        f"{_pct(d['browser_like_decode_only'])} for a browser-like "
        f"{d['browser_like_opus_kbps']:.0f} kbit/s mono one; aiortc's own decoder thread, "
        "which also hands every frame to the event loop, costs "
        f"{_pct(d['aiortc_decoder_thread'])} ({handoff * 100:+.0f} %). {_decode_verdict(d)} "
        "(Each of these figures is one 8 s sample; on these shared cores repeated runs "
        "differ by about ±20 %.)",
        *_batched(d),
    ]


def _batched(d: dict[str, Any]) -> list[str]:
    if "batched_one_thread" not in d:
        return []
    return [
        "",
        f"The same {d['speakers']} streams decoded back to back by one thread every 20 ms "
        f"cost {_pct(d['batched_one_thread'])} CPU-s/min: one thread per speaker that wakes "
        "for every 20 ms frame (aiortc's design) pays "
        f"{d['decode_only'] / max(d['batched_one_thread'], 1e-9):.1f}× as much per frame as "
        "decoding the frames of all speakers together.",
    ]


def _decode_verdict(d: dict[str, Any]) -> str:
    alone = d["decode_only"] or 1.0
    handoff = d["aiortc_decoder_thread"] / alone - 1
    same_for_browser = abs(d["browser_like_decode_only"] / alone - 1) < 0.25
    if handoff < 0.25:
        return "The decode column above is mostly libopus's own work" + (
            ", whatever the publisher sends." if same_for_browser else "."
        )
    return f"aiortc's per-frame hand-off adds {handoff * 100:.0f} % to libopus's own work."


def _tones(run: dict[str, Any]) -> str:
    shares = run.get("tone_share", {})
    if not shares:
        return "—"
    least = min(shares.values())
    fair = 1 / len(shares)
    return f"{len(shares)} of {len(shares)}" if least > fair / 2 else f"weakest {least:.2f}"


def _profile(profile: dict[str, Any]) -> list[str]:
    if "error" in profile:
        return [f"Profiling failed: {profile['error']}"]
    rows = [[f"`{name}`", f"{share * 100:.0f} %"] for name, share in profile["self_top"][:10]]
    areas = ", ".join(f"{name} {share * 100:.0f} %" for name, share in profile["self_by_area"])
    threads = ", ".join(f"{name} {share * 100:.0f} %" for name, share in profile["threads"])
    return [
        "### Where the 10-speaker server spends its CPU (py-spy)",
        "",
        f"{profile['seconds']} s of py-spy samples at 100 Hz ({profile['samples']} samples of "
        f"working threads; {profile['waiting_samples_left_out']} samples of threads blocked "
        "in a lock or epoll left out), raw stacks in "
        f"`{profile['file']}` (flamegraph / speedscope input).",
        "",
        f"- By thread: {threads}. (py-spy cannot tell every waiting thread from a working "
        "one here; the CPU table above, from the kernel's per-thread counters, is the "
        "split to trust. The profile shows what runs inside each thread.)",
        f"- By code that was running (innermost frame's package): {areas}.",
        *_by_thread(profile.get("by_thread", {})),
        "",
        *_table(["innermost frame", "share of all samples"], rows),
    ]


def _by_thread(threads: dict[str, list[list[Any]]]) -> list[str]:
    return [
        f"- Inside {name}: "
        + ", ".join(f"`{frame}` {share * 100:.0f} %" for frame, share in frames[:4])
        + "."
        for name, frames in threads.items()
    ]


# -- flood ----------------------------------------------------------------------------------

FLOOD_KINDS = {
    "held": "blocking reloads (`_HLS_msn` of the segment in progress), one per socket",
    "slowloris": "request headers trickled a byte per second, never finished",
    "playlist": "`GET audio.m3u8`",
    "part": "`GET` of recent parts and segments, and of parts far ahead",
    "session": "`POST /live/{space}/sessions`: no body, junk JSON, binary, 20 KB",
    "whip": "WHIP offers: no or forged token, speaker token with garbage SDP",
    "whip_idle": "WHIP offers with the speaker token whose peer never connects",
}
FLOOD_TARGETS = {
    "started_on_time": "first part within 2 s of the first speaker's WHIP POST",
    "parts_on_time_under_flood": "≥ 99.9 % of parts at each listener ≤ part + 1 s after due",
    "speakers_kept_and_heard": "both speakers on stage and connected, both tones in the mix",
    "memory_bounded": "peak RSS growth within the limit",
    "recovered": "back to the baseline ≤ 5 s after the flood stopped",
}


def _flood_rows(data: dict[str, Any]) -> list[list[str]]:
    start = data["start"]
    under = data["parts_under_flood"]
    after = data["after_flood"]
    mem = data["memory"]
    speakers = data["speakers"]
    met = data["met"]
    return [
        [FLOOD_TARGETS["started_on_time"],
         f"{_s(start['join_to_first_part_s'])} (creating the space took "
         f"{_s(start.get('create_space_s'))})",
         _verdict(met["started_on_time"])],
        [FLOOD_TARGETS["parts_on_time_under_flood"],
         f"{under['on_time_share']:.3%} of {under['expected']} ({under['missing']} missing)",
         _verdict(met["parts_on_time_under_flood"])],
        [FLOOD_TARGETS["speakers_kept_and_heard"],
         f"connected: {', '.join(speakers['connected']) or 'none'}; tone share under flood "
         f"{_tone_shares(speakers['tone_power_under_flood'])}, at the end "
         f"{_tone_shares(speakers['tone_power_at_end'])}",
         _verdict(met["speakers_kept_and_heard"])],
        [FLOOD_TARGETS["memory_bounded"],
         f"{mem['rss_before_flood_mb']:.0f} → peak {mem['rss_peak_mb']:.0f} MB "
         f"(+{mem['peak_growth_mb']:.0f}, limit +{mem['limit_growth_mb']:.0f}); "
         f"{mem['rss_end_mb']:.0f} MB at the end",
         _verdict(met["memory_bounded"])],
        [FLOOD_TARGETS["recovered"], f"{_s(after['recovery_s'], 1)}",
         _verdict(met["recovered"])],
    ]  # fmt: skip


def _tone_shares(powers: dict[str, Any]) -> str:
    return " / ".join(f"{k} Hz {v:.2f}" for k, v in powers.items() if k != "seconds")


def _delay_row(name: str, st: dict[str, Any]) -> list[str]:
    return [name, str(st.get("count", 0)), _ms(st.get("p50")), _ms(st.get("p95")),
            _ms(st.get("p99")), _ms(st.get("max"))]  # fmt: skip


def flood(data: dict[str, Any]) -> list[str]:
    rates = data["flood"]
    plan = data["plan"]
    kinds = rates["kinds"]
    under = data["parts_under_flood"]
    after = data["after_flood"]
    rows = [
        [f"`{k}`", FLOOD_KINDS.get(k, ""), f"{v['requests_per_s']:.0f}",
         str(v["peak_connections"]), _statuses(v)]
        for k, v in kinds.items() if k != "scout"
    ]  # fmt: skip
    out = [
        "## Proof under flood",
        "",
        f"A separate process floods the server for {plan['seconds']:.0f} s from "
        f"{plan['sources']} loopback addresses in 4 /24 prefixes. "
        "While it runs, the space is created, two aiortc speakers with tones (440 and 660 Hz) "
        f"join by WHIP (the first {data['start']['flood_running_for_s']:.0f} s into the "
        "flood), and "
        f"{data['listeners']} listeners, each from its own address and /24, follow the live "
        "edge as LL-HLS players do (blocking reload + preload hint + every part). After the "
        f"flood they listen on for {data['scale']['after_flood_s']:.0f} s. A part is *due* "
        "when its last sample was mixed (its segment's PROGRAM-DATE-TIME plus the part "
        "durations before it and its own); its **delay** is how long after that a listener "
        'had it. Reproduce: `make bench ARGS="flood"`.'
        + (
            f" The server runs with `{' '.join(flags)}`: here loopback addresses stand for "
            "the Internet, so they are limited like any client."
            if (flags := data.get("server_flags"))
            else ""
        ),
        "",
        *_table(["target", "measured", "verdict"], _flood_rows(data)),
        "",
        "What the flood achieved (requests sent per second over the flood; connections "
        "open at once, peak; the server's answers):",
        "",
        *_table(["kind", "what", "req/s", "peak conns", "answers"], rows),
        "",
        *_table(
            ["part delay after due", "parts", "p50", "p95", "p99", "max"],
            [
                _delay_row("under the flood", under["delay_after_due_s"]),
                _delay_row(
                    f"baseline: last {data['scale']['baseline_s']:.0f} s, no flood",
                    after["baseline_delay_s"],
                ),
            ],
        ),
        "",
        f"Back to normal means ≥ 99 % of the parts of every 0.5 s window within "
        f"{_ms(after['normal_delay_bound_s'])} (the baseline's p99 + 100 ms).",
        "",
        *_flood_load(data),
    ]
    if ratio := data.get("p95_delay_under_flood_vs_baseline"):
        out += ["", f"p95 delay under the flood is {ratio:.2f}× the baseline's."]
    if attribution := data.get("attribution"):
        out += ["", *_attribution(attribution)]
    return [*out, "", _measured(data)]


def _attribution(rows: list[dict[str, Any]]) -> list[str]:
    return [
        "Which junk does the harm: shorter runs of the same scenario with part of the flood "
        "(same listeners and speakers, one fresh server each):",
        "",
        *_table(
            ["flood", "req/s sent", "reload sockets", "parts on time", "delay p95",
             "`/healthz` p50", "server cores", "machine cores", "speakers kept"],
            [
                [f"{r['flood']} ({r['seconds']:.0f} s)", f"{r['requests_per_s']:.0f}",
                 str(r["held_peak"]), f"{r['on_time_share']:.1%}", _s(r["delay_p95_s"], 2),
                 _s(r["healthz_p50_s"], 2), f"{r['server_cores']:.2f}",
                 f"{r['machine_cores']:.2f}", "yes" if r["speakers_kept"] else "**no**"]
                for r in rows
            ],
        ),
    ]  # fmt: skip


def _flood_load(data: dict[str, Any]) -> list[str]:
    rates = data["flood"]
    health = data.get("healthz_s", {})
    under, after = health.get("under_flood", {}), health.get("after_flood", {})
    drops = data.get("speaker_drops_in_server_log") or []
    return [
        f"- CPU during the flood, in cores: server {data['server_cores_during_flood']:.2f} "
        f"({data.get('server_cpu_ms_per_flood_response', 0):.2f} ms per flood response), "
        f"flood client {rates['client_cpu_s'] / max(rates['seconds'] or 1, 1):.2f}, "
        f"listeners and speakers {data.get('listener_process_cores_during_flood', 0):.2f}, "
        f"whole machine {data.get('machine_cores_during_flood', 0):.2f} (the rest is other "
        "work on the shared cores).",
        f"- The server's event loop: `GET /healthz` took p50 {_s(under.get('p50'))}, max "
        f"{_s(under.get('max'))} under the flood; p50 {_s(after.get('p50'))}, max "
        f"{_s(after.get('max'))} from 5 s after it.",
        f"- Our speakers dropped by the server: "
        f"{'; '.join(f'`{d}`' for d in drops) if drops else 'none'}. Stage at the end: "
        f"{', '.join(data['speakers']['stage']) or 'empty'} (`junk` are the flood's idle WHIP "
        "peers, dropped after their 15 s connect grace).",
        "- The speakers' own connection states, seconds after the flood began: "
        + ("; ".join(data.get("speaker_state_changes") or []) or "not recorded")
        + ".",
        f"- Listener request errors: "
        f"{_value(data['listener_errors']) if data['listener_errors'] else 'none'}.",
        *(["- Refused or timed out, then retried: " + "; ".join(f"`{r}`" for r in retries)]
          if (retries := data.get("retries")) else []),
    ]  # fmt: skip


def _statuses(kind: dict[str, Any]) -> str:
    parts = [f"{code}: {n}" for code, n in kind["statuses"].items()]
    parts += [f"{name}: {n}" for name, n in kind["errors"].items()]
    if kind.get("closed_by_server"):
        parts.append(f"closed by server: {kind['closed_by_server']}")
    return ", ".join(parts) or "none (held open)"


# -- capacity -------------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:,.{digits}f}"


def _cap_what(r: dict[str, Any]) -> str:
    if r["system"] == "icecast":
        return f"Icecast, {r['page_ms']:.0f} ms Ogg pages"
    style = "LL-HLS (reload + parts)" if r["style"] == "ll" else "standard HLS (segments)"
    return f"edge, {style}, {r['part_ms']:.0f} ms parts"


def _cap_got(r: dict[str, Any]) -> str:
    if r["system"] == "icecast":
        return f"{r['connected']} connected, max gap p99 {r['max_gap_p99_s']:.2f} s"
    return (
        f"{r['media_received_share']:.0%} of media, {r['skipped']} skipped, "
        f"{r['late']} late (spread p50 {r['part_spread_p50_s']:.2f} s)"
    )


def _cap_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [_cap_what(r), _num(r["listeners"]), _num(r["server_cores"], 3),
         _num(r["listeners_per_core"]), _num(r.get("projected_listeners_per_core")),
         f"**{_num(r['listeners_per_core_used'])}**", _num(r["cores_per_1000_used"], 4),
         _num(r["requests_per_listener_s"], 2), _num(r["us_per_request"], 1),
         _num(r["kbps_per_listener"], 1), _cap_got(r),
         ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0",
         _num(r["load_cores"], 2), f"{r['loop_lag_p99_s'] * 1000:.0f} ms",
         "**yes**" if r["client_saturated"] else "no", _num(r["other_cores"], 2)]
        for r in runs
    ]  # fmt: skip


def capacity(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    loop = runs[0].get("event_loop", "asyncio") if runs else "asyncio"
    out = [
        "## Listeners per edge core: nginx edge (LL-HLS, standard HLS) against Icecast",
        "",
        "One run: a `majlis serve` origin (AAC at "
        f"{data['bitrate_bps'] // 1000} kbit/s, {data['segment_parts']} parts per segment) "
        "with one space and one aiortc WHIP speaker sending a tone, one nginx edge from "
        "`majlis edge-config --workers 1`, then listeners through the edge, grown "
        "500 → 2,000 → 5,000 without reconnecting. **LL-HLS** listeners do what hls.js does "
        "in low-latency mode: a blocking playlist reload (`_HLS_msn`/`_HLS_part`) for the "
        "part after the last they have, then a GET of each part it lists, once, on one "
        "keep-alive connection. **Standard** listeners poll the playlist every target "
        "duration and GET each new full segment once. **Icecast** 2.4.4 serves the same "
        f"bitrate (Ogg/Opus {data['bitrate_bps'] // 1000} kbit/s CBR from an ffmpeg feeder, "
        "the peers' baseline config) to one streaming GET per listener, with Ogg pages as long "
        "as the edge's parts (the same delay at the listener) and with ffmpeg's default 1 s "
        "pages.",
        "",
        f"- Each figure is one {data['window_s']:.0f} s window, {data['settle_s']:.0f} s "
        f"({data.get('icecast_settle_s', data['settle_s']):.0f} s for Icecast, whose 5-deep "
        "listen backlog makes late connections retry) after the last listener of the stage "
        "was started; Icecast's figures are per listener connected in the window. CPU is "
        "utime + stime from /proc of every "
        "process of the server (nginx master + worker, or icecast2), at both ends of the "
        "window. *Measured* listeners per core = listeners ÷ server cores. *At the nominal "
        "request rate* = 10⁶ ÷ (µs per request × 2 requests per part, or per segment for "
        "standard listeners): what listeners that keep up would cost. **listeners per core** "
        "is the lower of the two (a starved load generator asks for less than real players "
        "would) and is what the ratios and targets use.",
        "- The edge (or Icecast) is pinned to CPU0; origin, speaker and Ogg feeder to CPU1; "
        f"the load generator ({data['load_processes']} Python processes, {loop} event loop, "
        "raw HTTP/1.1) is not pinned: it shares both cores. **load** = its cores; "
        "**other** = the rest of the machine's busy time (other work on these shared "
        "cores). A load generator whose event loop lagged over 100 ms (p99) or whose "
        "listeners received under 95 % of the media is marked **saturated**: then its "
        "listeners asked less than real players would, and listeners per core is "
        "optimistic.",
        f"- *late*: parts a listener got over {data['late_s']:.0f} s after the first listener "
        "of its process had them; *spread*: that delay's median. *kbit/s on the wire*: "
        "every byte a listener read, HTTP headers and playlists included.",
        "",
        *_table(
            [
                "server",
                "listeners",
                "server cores",
                "listeners per core, measured",
                "at the nominal request rate",
                "listeners per core",
                "cores /1000",
                "req/s per listener",
                "µs CPU per request",
                "kbit/s on the wire per listener",
                "what listeners got",
                "errors",
                "load cores",
                "load loop lag p99",
                "load saturated",
                "other cores",
            ],
            _cap_rows(runs),
        ),
        "",
    ]
    verdicts = data["verdicts"]
    target = data["targets"]["ll_listeners_per_core"]
    out += [
        "Cost per listener, edge ÷ Icecast (cores per 1,000 listeners; below 1 the edge is "
        "cheaper):",
        "",
        *_table(
            [
                "listeners",
                "LL-HLS ÷ Icecast, same delay",
                "standard HLS ÷ Icecast 1 s pages",
                "LL-HLS ÷ Icecast 1 s pages",
                f"LL-HLS ≥ {target:,} per core",
                "LL-HLS ≤ Icecast at the same delay",
            ],
            [
                [
                    _num(int(n)),
                    _num(v["ll_over_icecast_same_delay"], 2),
                    _num(v["std_over_icecast_1s_pages"], 2),
                    _num(v["ll_over_icecast_1s_pages"], 2),
                    _verdict(v["ll_per_core_met"]),
                    _verdict(v["ll_not_costlier_than_icecast_met"]),
                ]
                for n, v in sorted(verdicts.items(), key=lambda kv: int(kv[0]))
            ],
        ),
        "",
        "Cost per listener against part duration (LL-HLS through the edge; Icecast with the "
        "nearest page length measured):",
        "",
        *_table(
            [
                "part",
                "edge cores /1000",
                "edge listeners per core",
                "req/s per listener",
                "µs per request",
                "Icecast page",
                "Icecast cores /1000",
                "edge ÷ Icecast",
                "load cores",
                "load saturated",
            ],
            [
                [
                    f"{c['part_ms']:.0f} ms",
                    _num(c["edge_cores_per_1000"], 4),
                    _num(c["edge_listeners_per_core"]),
                    _num(c["edge_requests_per_listener_s"], 2),
                    _num(c["edge_us_per_request"], 1),
                    f"{c['icecast_page_ms']:.0f} ms" if c["icecast_page_ms"] else "—",
                    _num(c["icecast_cores_per_1000"], 4),
                    _num(c["edge_over_icecast"], 2),
                    _num(c["load_cores"], 2),
                    "**yes**" if c["client_saturated"] else "no",
                ]
                for c in data["curve"]
            ],
        ),
        "",
        "An edge's cost per listener is (requests per listener per second) × (CPU per "
        "request): every LL-HLS listener makes about two requests per part it receives, so "
        "it costs in proportion to 1 / part duration; an Icecast listener costs one socket "
        "write per Ogg page, in proportion to 1 / page duration.",
    ]
    first = next((r for r in runs if r["style"] == "ll"), None)
    if first and first.get("playlist_bytes"):
        out += [
            "",
            f"Bytes besides the audio: the live playlist was {first['playlist_bytes']:,} bytes "
            f"at the end of the {first['part_ms']:.0f} ms run (every segment of the live "
            "window, and the parts of the last few), and every blocking reload answer and "
            "every standard poll carries one; that, the HTTP headers and the fMP4 boxes are "
            "the difference between *kbit/s on the wire* and the "
            f"{data['bitrate_bps'] // 1000} kbit/s audio.",
        ]
    if notes := data.get("notes"):
        out += ["", *notes]
    return [*out, "", _measured(data) + f" The whole bench took {data['bench_seconds']} s."]


def _capacity_summary(d: dict[str, Any]) -> list[list[str]]:
    big = str(max(int(n) for n in d["verdicts"]))
    v = d["verdicts"][big]
    target = d["targets"]["ll_listeners_per_core"]
    return [
        [f"LL-HLS listeners per edge core ({int(big):,} listeners)",
         _num(v["ll_listeners_per_core"]), f"≥ {target:,}", _verdict(v["ll_per_core_met"])],
        [f"Edge CPU per LL-HLS listener ÷ Icecast's at the same delay ({int(big):,})",
         _num(v["ll_over_icecast_same_delay"], 2), "≤ 1",
         _verdict(v["ll_not_costlier_than_icecast_met"])],
    ]  # fmt: skip


# -- sections written by other benchmarks ---------------------------------------------------

TITLES = {
    "ear_latency": "Latency at the ear (Chromium playing the space page with hls.js)",
    "join_time": "Join time (Chromium, fresh listener page)",
}


# What a reader needs to judge a section that its figures do not say.
EXPLAIN = {
    "ear_latency": (
        "hls.js settings (src/majlis/web/static/space.js): `lowLatencyMode: true` (parts, "
        "blocking reloads, preload hints); no `liveSyncDuration`, so the playlist's "
        "`PART-HOLD-BACK` (three 213 ms parts, 0.642 s) sets the distance behind the live "
        "edge: the smallest the HLS spec allows, enough for the parts' arrival jitter "
        "measured at the HTTP edge; `backBufferLength: 30` so a long space does not grow the "
        "page's memory. `maxLiveSyncPlaybackRate: 1.1` is set, but hls.js 1.7 speeds up only "
        "with more than 1 s buffered, which a three-part hold never reaches; and hls.js "
        "starts a little behind its own target and stays there, so the page makes "
        "one jump forward inside its buffer in the first 5 s of playback (`joinAtTarget`), "
        "never later, so no listener loses words once listening. After a stall hls.js "
        "raises its target by 1 s (`liveSyncOnStallIncrease`, its default): safety first."
    ),
}


def _is_stats(value: Any) -> bool:
    return isinstance(value, dict) and "p50" in value and "p95" in value


def _stats_cell(value: dict[str, Any]) -> str:
    n = value.get("count", value.get("n"))
    return f"p50 {_s(value.get('p50'))}, p95 {_s(value.get('p95'))}, max {_s(value.get('max'))}" + (
        f" (n = {n})" if n is not None else ""
    )


def _rows(prefix: str, value: Any) -> list[list[str]]:
    if _is_stats(value):
        return [[f"`{prefix}`", _stats_cell(value)]]
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _rows(f"{prefix}.{k}".strip("."), v)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [row for i, v in enumerate(value, 1) for row in _rows(f"{prefix}[{i}]", v)]
    if isinstance(value, list) and len(value) > 8:
        return [[f"`{prefix}`", f"{len(value)} values (bench/results.json)"]]
    return [[f"`{prefix}`", _value(value)]]


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _records_table(records: list[dict[str, Any]]) -> list[str]:
    """One row per record (a listener, a run), one column per figure it holds."""
    flat = [dict(_flat_cells("", r)) for r in records]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    rows = [[str(i), *(row.get(c, "—") for c in columns)] for i, row in enumerate(flat, 1)]
    return _table(["#", *(f"`{c}`" for c in columns)], rows)


def _flat_cells(prefix: str, value: Any) -> list[tuple[str, str]]:
    if _is_stats(value):
        return [(prefix, _stats_cell(value))]
    if isinstance(value, dict):
        return [c for k, v in value.items() for c in _flat_cells(f"{prefix}.{k}".strip("."), v)]
    return [(prefix, _value(value))]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "met" if value else "**missed**"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    return str(value)


def generic(name: str, data: dict[str, Any]) -> list[str]:
    """Any section: its description, its headline against its target, then every figure."""
    skip = {"what", "description", "notes", "measured_at", "machine"}
    out = [f"## {TITLES.get(name, name.replace('_', ' ').capitalize())}", ""]
    if text := data.get("what") or data.get("description"):
        out += [f"What: {text}.", ""]
    if name in EXPLAIN:
        out += [EXPLAIN[name], ""]
    if headline := _headline(name, data):
        out += [*_table(["figure", "measured", "target", "verdict"], [headline]), ""]
    body = {k: v for k, v in data.items() if k not in skip and not _is_records(v)}
    out += _table(["figure", "value"], _rows("", body))
    for key, records in data.items():
        if _is_records(records):
            out += ["", f"`{key}`:", "", *_records_table(records)]
    notes = data.get("notes")
    if notes:
        out += ["", *([notes] if isinstance(notes, str) else [str(n) for n in notes])]
    return [*out, "", _measured(data)]


# -- summary --------------------------------------------------------------------------------


HEADLINE_KEYS = ("latency_s", "join_s")


def _headline(name: str, data: dict[str, Any]) -> list[str] | None:
    """[figure, measured, target, verdict] from a section's first stats and its p95 target."""
    target = data.get("target_p95_s")
    # results.json sorts keys: prefer the figure the target is about over helpers like
    # `from_play_click_s` that sort before it.
    keys = [k for k, v in data.items() if _is_stats(v)]
    key = next((k for k in HEADLINE_KEYS if k in keys), keys[0] if keys else None)
    if target is None or key is None:
        return None
    title = TITLES.get(name, name).split(" (")[0]
    met = data.get("met")
    verdict = _verdict(met if isinstance(met, bool) else None)
    return [title, f"p95 {_s(data[key].get('p95'))}", f"p95 ≤ {target} s", verdict]


def summary(results: dict[str, Any]) -> list[str]:
    rows: list[list[str]] = []
    if "edge_latency" in results:
        d = results["edge_latency"]
        rows.append(
            ["Tone onset → part at an LL-HLS client", f"p95 {_s(d['latency_s'].get('p95'))}",
             f"p95 ≤ {d['target_p95_s']} s", _verdict(d["met"])]
        )  # fmt: skip
    for name in ("ear_latency", "join_time"):
        if name in results and (row := _headline(name, results[name])):
            rows.append(row)
    if "cpu" in results:
        d = results["cpu"]
        last = d["runs"][-1]
        n = d["targets"]["speakers"]
        rows += [
            [f"Whole server, {n} speakers", f"{_pct(last['server'])} CPU-s/min",
             f"≤ {d['targets']['server']:.0f} CPU-s/min (50 %)", _verdict(d["met"]["server"])],
            [f"Decode + mix + encode + package, {n} speakers",
             f"{_pct(last['media'])} CPU-s/min",
             f"≤ {d['targets']['media']:.0f} CPU-s/min (10 %)", _verdict(d["met"]["media"])],
        ]  # fmt: skip
    if "flood" in results:
        d = results["flood"]
        rows.append(
            [f"Parts on time for {d['listeners']} listeners under a "
             f"{d['flood']['seconds']:.0f} s flood (and the other flood targets)",
             f"{d['parts_under_flood']['on_time_share']:.3%}", "≥ 99.9 %",
             _verdict(all(d["met"].values()))]
        )  # fmt: skip
    if "capacity" in results:
        rows += _capacity_summary(results["capacity"])
    if not rows:
        return []
    return ["## Summary", "", *_table(["figure", "measured", "target", "verdict"], rows), ""]


RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "edge_latency": edge_latency,
    "cpu": cpu,
    "flood": flood,
    "capacity": capacity,
}
ORDER = ("edge_latency", "ear_latency", "join_time", "cpu", "flood", "capacity")


def _machine(results: dict[str, Any]) -> str:
    model = next(
        (s["cpu_model"] for s in results.values() if isinstance(s, dict) and "cpu_model" in s),
        "unknown CPU",
    )
    for section in results.values():
        if isinstance(section, dict) and "machine" in section:
            m = section["machine"]
            return f"{m.get('cpus', '?')} shared cores ({model}), Python {m.get('python', '?')}"
    return "unknown"


def render(results: dict[str, Any]) -> str:
    lines = [INTRO.format(machine=_machine(results)), *summary(results)]
    names = [n for n in ORDER if n in results] + sorted(set(results) - set(ORDER))
    if not names:
        lines.append("No results yet: run `make bench`.")
    for name in names:
        renderer = RENDERERS.get(name)
        section = results[name]
        lines += renderer(section) if renderer else generic(name, section)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> Path:
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(render(load()))
    return PAGE
