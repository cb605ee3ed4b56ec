"""Per-speaker input FIFO between the network (pushes) and the mixer clock (pulls).

Depth must stay bounded without cutting speech. Network jitter and clock drift make a
FIFO creep deeper over a long talk (measured: after one underrun under CPU contention an
input stayed ~100 ms deeper for the rest of the run), and every extra millisecond of
depth is latency for every listener. The policy:

* prime: after joining or an underrun, wait for ``target`` of audio before playing, so a
  jittery speaker does not stutter frame by frame;
* play: one tick per pull; a short input yields its samples padded with silence;
* drift: while deeper than ``high``, drop one tick of audio only when that tick is quiet
  (a pause between words), so the listener never loses a syllable;
* bound: deeper than ``limit`` (a speaker who shouts nonstop while drifting), drop the
  oldest audio down to ``target``. This is the last resort and is counted.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from majlis.media.frames import TICK_SAMPLES, Samples, silence
from majlis.media.levels import rms_dbfs

QUIET_DBFS = -50.0


@dataclass(frozen=True, slots=True)
class DepthPolicy:
    target: int = 2 * TICK_SAMPLES  # 40 ms
    # One tick of slack over the target before quiet audio is dropped: measured, a high
    # mark of 100 ms let one late network burst leave every listener 60 ms further behind
    # for the rest of the talk (the drift policy only pulled the depth back to `high`).
    high: int = 3 * TICK_SAMPLES  # 60 ms
    limit: int = 20 * TICK_SAMPLES  # 400 ms


@dataclass(slots=True)
class BufferStats:
    underruns: int = 0
    quiet_drops: int = 0
    overflow_drops: int = 0
    pushed_samples: int = 0


class InputBuffer:
    def __init__(self, policy: DepthPolicy | None = None) -> None:
        self.policy = policy or DepthPolicy()
        self.stats = BufferStats()
        self._chunks: deque[Samples] = deque()
        self._depth = 0
        self._priming = True
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        return self._depth

    def push(self, samples: Samples) -> None:
        with self._lock:
            self._chunks.append(samples)
            self._depth += samples.size
            self.stats.pushed_samples += samples.size
            if self._depth > self.policy.limit:
                excess = self._depth - self.policy.target
                self._discard(excess)
                self.stats.overflow_drops += 1

    def pull(self, n: int = TICK_SAMPLES) -> Samples:
        with self._lock:
            if self._priming:
                if self._depth < self.policy.target:
                    return silence(n)
                self._priming = False
            if self._depth < n:
                out = silence(n)
                got = self._take(self._depth)
                out[: got.size] = got
                self._priming = True
                self.stats.underruns += 1
                return out
            out = self._take(n)
            if self._depth > self.policy.high and self._head_is_quiet(n):
                self._discard(n)
                self.stats.quiet_drops += 1
            return out

    def _head_is_quiet(self, n: int) -> bool:
        head = self._peek(n)
        return rms_dbfs(head) < QUIET_DBFS

    def _peek(self, n: int) -> Samples:
        parts: list[Samples] = []
        need = n
        for chunk in self._chunks:
            parts.append(chunk[:need])
            need -= min(need, chunk.size)
            if need == 0:
                break
        return np.concatenate(parts) if parts else silence(0)

    def _take(self, n: int) -> Samples:
        out = np.empty(n, dtype=np.float32)
        filled = 0
        while filled < n:
            chunk = self._chunks[0]
            use = min(chunk.size, n - filled)
            out[filled : filled + use] = chunk[:use]
            filled += use
            if use == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[use:]
        self._depth -= n
        return out

    def _discard(self, n: int) -> None:
        self._take(min(n, self._depth))
