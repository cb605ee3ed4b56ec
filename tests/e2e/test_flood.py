"""A space starts on time and keeps playing for real listeners while junk floods the server.

The flood is its own process (tests/support/flood.py): junk listener joins, junk WHIP
offers, hundreds of held blocking reloads, slowloris connections, playlist and part floods,
from 16 loopback addresses in 4 /24s. While it runs, two aiortc speakers start a space and 50
player-like listeners follow it; afterwards the listeners keep listening to show the space
is back to normal. The scale is modest: the flood costs the server about a third of what the
50 listeners cost it, so a 2-core machine shared with other work runs it in about 30 s
without blaming that work on the flood. `make bench ARGS="flood"` runs the full scale
(60 s, 3,000 held reloads, 300 slowloris) and reports the bare figures against the issue's
targets: see docs/benchmarks.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.flood import Plan
from tests.support.flood_scenario import (
    ON_TIME_TARGET,
    RECOVERY_TARGET_S,
    SPEAKER_NAMES,
    START_TARGET_S,
    TONE_PRESENT,
    TONES,
    Scale,
    analyse,
    run_scenario,
)

PLAN = Plan(
    seconds=18.0,
    held=100,
    slowloris=50,
    playlist_rate=15.0,
    part_rate=15.0,
    session_rate=5.0,
    whip_rate=3.0,
    whip_idle_rate=0.2,
    connections_per_kind=8,
    sources=16,
)
SCALE = Scale(listeners=50, flood_lead_s=2.0, after_flood_s=8.0, baseline_s=3.0)


async def test_space_starts_and_plays_through_a_flood(tmp_path: Path) -> None:
    run = await run_scenario(tmp_path, PLAN, SCALE)
    result = analyse(run, PLAN, SCALE)
    summary = json.dumps({k: v for k, v in result.items() if k != "flood"}, indent=1)
    rates = result["flood"]

    # The flood held its connections and sent every kind, or the test proves nothing. Its
    # rates fall when the server slows down (each connection waits for its answer), so
    # only a tenth of the plan is required: a slow machine must not fail this check.
    assert rates["held_concurrent_peak"] >= PLAN.held * 0.9, rates
    assert rates["slowloris_concurrent_peak"] >= PLAN.slowloris * 0.9, rates
    for kind in ("playlist", "part", "session", "whip"):
        planned = getattr(PLAN, f"{kind}_rate")
        assert rates["requests_per_s"][kind] >= planned * 0.1, (kind, rates)
    assert result["errors"] == [], summary

    start = result["start"]["join_to_first_part_s"]
    assert start is not None and start <= START_TARGET_S, summary

    # On time: ≤ part duration + 1 s after the part began, counted from the delay the same
    # listeners see without the flood at the end of this run (its p99), so that other work on
    # a shared machine is not blamed on the flood. bench/flood.py reports the bare figure.
    flood = result["parts_under_flood"]
    assert flood["expected"] >= SCALE.listeners * 20, summary
    assert result["after_flood"]["baseline_delay_s"]["count"] > 0, summary
    assert flood["on_time_share_vs_baseline"] >= ON_TIME_TARGET, summary

    speakers = result["speakers"]
    assert all(name in speakers["stage"] for name in SPEAKER_NAMES), summary
    assert speakers["connected"] == list(SPEAKER_NAMES), summary
    for when in ("tone_power_under_flood", "tone_power_at_end"):
        for freq in TONES:
            assert speakers[when][f"{freq:.0f}"] > TONE_PRESENT, (when, summary)

    memory = result["memory"]
    assert memory["peak_growth_mb"] <= memory["limit_growth_mb"], summary

    after = result["after_flood"]
    assert after["expected"] > 0, summary
    assert after["recovery_s"] <= RECOVERY_TARGET_S, summary
    other_targets = {k: v for k, v in result["met"].items() if k != "parts_on_time_under_flood"}
    assert all(other_targets.values()), summary
