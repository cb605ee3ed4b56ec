"""A soft limiter: the sum of many loud speakers bends smoothly toward full scale.

Below the knee the signal passes untouched, so one speaker is never coloured; above it a
tanh curve approaches 1.0 but never reaches it, so there is no wrap-around and no hard
clipping however many speakers shout at once.
"""

from __future__ import annotations

import numpy as np

from majlis.media.frames import Samples

KNEE = 0.6
# The curve's asymptote. tanh rounds to exactly 1.0 in float32 once its argument passes ~9,
# so aiming at 1.0 itself would put loud sums on full scale; aim just below it instead.
CEILING = 0.99


def soft_limit(x: Samples, knee: float = KNEE) -> Samples:
    magnitude = np.abs(x)
    over = magnitude > knee
    if not over.any():
        return x
    head = CEILING - knee
    bent = knee + head * np.tanh((magnitude[over] - knee) / head)
    out = x.copy()
    out[over] = np.sign(x[over]) * bent
    return out.astype(np.float32, copy=False)
