"""A cluster-wide request budget per address, on top of each node's own token buckets.

Each node counts the requests it let through; once a second the counts are summed over every
node (majlis.cluster.ratesync), and an address whose sum passes the budget of the current
window is refused by every node until that window ends. Without it, an address spreading its
requests over N nodes would get N times its rate.
"""

from __future__ import annotations

import math
from collections import Counter

from majlis.guard.ratelimit import Rate

WINDOW_S = 10
# Addresses pushed per sync: the busiest ones, which are the ones a budget is for.
MAX_PUSHED_KEYS = 1000


class SharedBudget:
    def __init__(self, rate: Rate, window_s: int = WINDOW_S) -> None:
        # What one node's bucket lets through in a window at most: the whole cluster gives
        # an address no more than that.
        self.window_s = window_s
        self.budget = int(rate.per_s * window_s + rate.burst)
        self._counts: Counter[str] = Counter()
        self._blocked: dict[str, float] = {}

    def blocked(self, key: str, wall: float) -> int:
        """Whole seconds until the address may be served again here (0: now)."""
        until = self._blocked.get(key)
        if until is None:
            return 0
        if wall >= until:
            del self._blocked[key]
            return 0
        return max(1, math.ceil(until - wall))

    def note(self, key: str) -> None:
        self._counts[key] += 1

    def drain(self, wall: float) -> tuple[int, list[tuple[str, int]]]:
        """The window now, and the counts since the last drain (forgotten here)."""
        top = self._counts.most_common(MAX_PUSHED_KEYS)
        self._counts.clear()
        return int(wall // self.window_s), top

    def apply(self, window: int, totals: list[tuple[str, int]]) -> None:
        """The cluster's sums for this window: addresses past the budget wait for the next."""
        until = (window + 1) * self.window_s
        for key, total in totals:
            if total > self.budget:
                self._blocked[key] = until
        if len(self._blocked) > 4 * MAX_PUSHED_KEYS:
            self._blocked = {k: u for k, u in self._blocked.items() if u > window * self.window_s}
