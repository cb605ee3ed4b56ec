"""Whether this node should be sent new listeners and speakers (/readyz), and why not."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# A pipeline whose latest tick ran this late, or that has not ticked for this long, cannot
# keep its parts on time: new listeners would join a stuttering stream.
MAX_TICK_LAG_S = 0.5
MAX_TICK_SILENCE_S = 1.0
# Below this much free space a new segment may fail to be written.
MIN_FREE_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class _Seen:
    ticks: int
    at: float


@dataclass(slots=True)
class TickWatch:
    """Notices a pipeline thread that stopped ticking, between two readiness checks."""

    _seen: dict[str, _Seen] = field(default_factory=dict)

    def stalled(self, key: str, ticks: int, now: float) -> bool:
        seen = self._seen.get(key)
        if seen is None or seen.ticks != ticks:
            self._seen[key] = _Seen(ticks, now)
            return False
        return now - seen.at > MAX_TICK_SILENCE_S

    def keep_only(self, keys: set[str]) -> None:
        for key in set(self._seen) - keys:
            del self._seen[key]


def data_folder_problem(path: Path) -> str | None:
    """Why the data folder cannot take new recordings, or None."""
    try:
        stat = os.statvfs(path)
    except OSError as exc:
        return f"data folder unreadable: {exc.strerror}"
    if stat.f_flag & os.ST_RDONLY or not os.access(path, os.W_OK):
        return "data folder is not writable"
    if stat.f_bavail * stat.f_frsize < MIN_FREE_BYTES:
        return "data folder has less than 64 MiB free"
    return None


def reasons(
    *,
    stopping: bool,
    listeners_full: bool,
    data_problem: str | None,
    lagging: list[str],
    store_problem: str | None = None,
) -> list[str]:
    """Every reason this node is not ready (empty: ready)."""
    found: list[str] = []
    if store_problem:
        found.append(store_problem)
    if stopping:
        found.append("shutting down")
    if listeners_full:
        found.append("listener connections are at their limit")
    if data_problem:
        found.append(data_problem)
    found.extend(f"space {space}: the media pipeline is lagging" for space in lagging)
    return found
