"""Emoji reactions: a fixed set, rate-limited per listener, counted for the room state.

The room state carries counts, never who reacted: totals since the start, and the reactions
of the last RECENT_S seconds (what a page animates).
"""

from __future__ import annotations

from collections import Counter, deque

from majlis.guard.ratelimit import TokenBuckets, TooManyRequests

ALLOWED = ("👏", "❤️", "😂", "🔥", "💯", "🙏", "👍", "😮")
RECENT_S = 10.0
# Per listener: a burst of 5, then one every 2 s. A person taps a few times, not a hundred.
BURST = 5.0
RATE_PER_S = 0.5
MAX_TRACKED_LISTENERS = 100_000
# Reactions remembered for the recent window; past this the oldest are counted as expired.
MAX_RECENT = 10_000


class Reactions:
    def __init__(self, burst: float = BURST, rate: float = RATE_PER_S) -> None:
        self.totals: Counter[str] = Counter()
        self._recent: deque[tuple[float, str]] = deque()
        self._limits = TokenBuckets(burst, rate, MAX_TRACKED_LISTENERS)

    def add(self, subject: str, emoji: object, now: float) -> None:
        if not isinstance(emoji, str) or emoji not in ALLOWED:
            raise ValueError("emoji must be one of " + " ".join(ALLOWED))
        if not self._limits.allow(subject, now):
            wait = self._limits.retry_after(subject)
            raise TooManyRequests("too many reactions: slow down", wait)
        self.totals[emoji] += 1
        self._recent.append((now, emoji))
        if len(self._recent) > MAX_RECENT:
            self._recent.popleft()

    def recent(self, now: float) -> dict[str, int]:
        while self._recent and self._recent[0][0] < now - RECENT_S:
            self._recent.popleft()
        return dict(Counter(emoji for _, emoji in self._recent))

    def summary(self, now: float) -> dict[str, object]:
        return {"window_s": RECENT_S, "recent": self.recent(now), "total": dict(self.totals)}
