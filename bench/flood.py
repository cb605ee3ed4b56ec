"""Proof under flood, at full scale: a space starts on time and plays on for 50 listeners
while a separate process floods the server for 60 s.

The flood (tests/support/flood.py) holds thousands of blocking playlist reloads and
hundreds of slowloris connections, and sends junk listener joins, junk WHIP offers and plain
playlist and part requests from 16 loopback addresses in 4 /24s. This process creates the space once
the flood runs, connects two aiortc speakers with tones, and follows the live edge with 50
player-like listeners (tests/support/flood_scenario.py), then listens on after the flood to
time the recovery against the flood-free baseline measured at the end of the same run.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tests.support.flood import Plan
from tests.support.flood_scenario import (
    ON_TIME_GRACE_S,
    ON_TIME_TARGET,
    RECOVERY_TARGET_S,
    START_TARGET_S,
    Scale,
    analyse,
    run_scenario,
)

from bench.cpu import cpu_model
from bench.results import update

PLAN = Plan(
    seconds=60.0,
    held=3000,
    slowloris=300,
    slowloris_interval_s=1.0,
    playlist_rate=400.0,
    part_rate=400.0,
    session_rate=150.0,
    whip_rate=60.0,
    whip_idle_rate=0.2,
    connections_per_kind=32,
    sources=16,
)
SCALE = Scale(listeners=50, flood_lead_s=5.0, after_flood_s=15.0, baseline_s=6.0)
# Which part of the flood does the harm: shorter runs with one kind of junk left out or
# kept alone, against the same space and listeners.
ATTRIBUTION_SECONDS = 30.0
ATTRIBUTION = {
    "held reloads only": replace(
        PLAN, seconds=ATTRIBUTION_SECONDS, slowloris=0, playlist_rate=0.0, part_rate=0.0,
        session_rate=0.0, whip_rate=0.0, whip_idle_rate=0.0,
    ),
    "everything but held reloads": replace(PLAN, seconds=ATTRIBUTION_SECONDS, held=0),
}  # fmt: skip
ATTRIBUTION_SCALE = Scale(listeners=50, flood_lead_s=3.0, after_flood_s=8.0, baseline_s=3.0)


def _scenario(plan: Plan, scale: Scale) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="majlis-bench-") as tmp:
        run = asyncio.run(run_scenario(Path(tmp), plan, scale))
    return analyse(run, plan, scale)


def _attribution() -> list[dict[str, Any]]:
    out = []
    for name, plan in ATTRIBUTION.items():
        data = _scenario(plan, ATTRIBUTION_SCALE)
        under = data["parts_under_flood"]
        out.append(
            {
                "flood": name,
                "seconds": plan.seconds,
                "requests_per_s": sum(data["flood"]["requests_per_s"].values()),
                "held_peak": data["flood"]["held_concurrent_peak"],
                "on_time_share": under["on_time_share"],
                "delay_p95_s": under["delay_after_due_s"].get("p95"),
                "healthz_p50_s": data["healthz_s"]["under_flood"].get("p50"),
                "server_cores": data["server_cores_during_flood"],
                "machine_cores": data["machine_cores_during_flood"],
                "speakers_kept": data["met"]["speakers_kept_and_heard"],
            }
        )
    return out


def measure() -> dict[str, Any]:
    data = _scenario(PLAN, SCALE)
    under = data["parts_under_flood"]["delay_after_due_s"]
    base = data["after_flood"]["baseline_delay_s"]
    if base.get("p95"):
        data["p95_delay_under_flood_vs_baseline"] = round(under["p95"] / base["p95"], 2)
    data["what"] = (
        "a space created and started while a separate process floods the server; 2 aiortc "
        f"speakers, {SCALE.listeners} LL-HLS listeners; then {SCALE.after_flood_s:.0f} s "
        "without the flood"
    )
    data["plan"] = asdict(PLAN)
    data["scale"] = asdict(SCALE)
    data["targets"] = {
        "join_to_first_part_s": START_TARGET_S,
        "on_time_share": ON_TIME_TARGET,
        "on_time_grace_after_part_s": ON_TIME_GRACE_S,
        "recovery_s": RECOVERY_TARGET_S,
    }
    data["cpu_model"] = cpu_model()
    data["attribution"] = _attribution()
    return data


def _print(data: dict[str, Any]) -> None:
    rates = data["flood"]
    print(
        f"flood: {rates['held_concurrent_peak']} held reloads, "
        f"{rates['slowloris_concurrent_peak']} slowloris, "
        + ", ".join(f"{k} {v}/s" for k, v in rates["requests_per_s"].items())
    )
    under = data["parts_under_flood"]
    print(
        f"start {data['start']['join_to_first_part_s']} s; on time under flood "
        f"{under['on_time_share']:.4%} of {under['expected']} parts "
        f"(p99 delay {under['delay_after_due_s'].get('p99')} s); recovery "
        f"{data['after_flood']['recovery_s']} s; RSS peak {data['memory']['rss_peak_mb']} MB"
    )
    print(
        "targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in data["met"].items())
    )


def main() -> None:
    data = measure()
    update("flood", data)
    _print(data)


if __name__ == "__main__":
    main()
