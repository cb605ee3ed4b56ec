"""Per-speaker loudness for "who is talking"."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from majlis.media.frames import Samples

FLOOR_DBFS = -100.0
# Speech peaks sit around -30..-10 dBFS; room noise from a laptop mic around -60.
TALKING_DBFS = -45.0
# Keep "talking" lit for this long after the level drops, so avatars do not flicker
# between words.
TALKING_HOLD_S = 0.4


def rms_dbfs(samples: Samples) -> float:
    if samples.size == 0:
        return FLOOR_DBFS
    # A dot product, not np.mean(np.square(...)): the mixer calls this for every speaker on
    # every 20 ms tick, and np.mean's overhead on 960 samples was most of Mixer.tick's time.
    mean_square = float(np.dot(samples, samples)) / samples.size
    if mean_square <= 1e-10:
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 10.0 * math.log10(mean_square))


@dataclass(slots=True)
class LevelMeter:
    """Smoothed level: fast attack, slow release, like a VU meter."""

    level_dbfs: float = FLOOR_DBFS
    last_loud_at: float = -math.inf

    def update(self, samples: Samples, now: float) -> float:
        current = rms_dbfs(samples)
        if current > self.level_dbfs:
            self.level_dbfs = current
        else:
            self.level_dbfs = max(current, self.level_dbfs - 1.5)
        if current >= TALKING_DBFS:
            self.last_loud_at = now
        return self.level_dbfs

    def talking(self, now: float) -> bool:
        return now - self.last_loud_at <= TALKING_HOLD_S
