"""The mixer's arithmetic: one 20 ms tick of every input, summed and soft-limited.

Pure and synchronous; the clock that drives ticks lives in the live pipeline.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from majlis.media.frames import TICK_SAMPLES, Samples, silence
from majlis.media.levels import LevelMeter
from majlis.media.limiter import soft_limit


@dataclass(frozen=True, slots=True)
class InputLevel:
    input_id: str
    level_dbfs: float
    talking: bool
    muted: bool


class Source(Protocol):
    """One input of the mix: an InputBuffer, or something that fills one (OpusInput)."""

    def pull(self, n: int) -> Samples: ...


@dataclass(slots=True)
class _Input:
    source: Source
    meter: LevelMeter
    muted: bool = False


class Mixer:
    def __init__(self) -> None:
        self._inputs: dict[str, _Input] = {}
        self._lock = threading.Lock()

    def add_input(self, input_id: str, source: Source) -> None:
        with self._lock:
            self._inputs[input_id] = _Input(source=source, meter=LevelMeter())

    def remove_input(self, input_id: str) -> None:
        with self._lock:
            self._inputs.pop(input_id, None)

    def set_muted(self, input_id: str, muted: bool) -> None:
        with self._lock:
            if entry := self._inputs.get(input_id):
                entry.muted = muted

    def tick(self, now: float) -> Samples:
        """Pull one tick from every input; a stalled input contributes silence."""
        with self._lock:
            inputs = list(self._inputs.values())
        if not inputs:
            return silence()
        total = np.zeros(TICK_SAMPLES, dtype=np.float32)
        for entry in inputs:
            samples = entry.source.pull(TICK_SAMPLES)
            entry.meter.update(samples, now)
            if not entry.muted:
                total += samples
        return soft_limit(total)

    def levels(self, now: float) -> list[InputLevel]:
        with self._lock:
            items = list(self._inputs.items())
        return [
            InputLevel(key, round(e.meter.level_dbfs, 1), e.meter.talking(now), e.muted)
            for key, e in items
        ]
