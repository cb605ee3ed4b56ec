"""The listener capacity of a node and its waiting room.

Admitted listeners are the node's live listener sessions (docs/metrics.md's presence
window); they are never sent away. When the node is full a newcomer gets a ticket: a
sequence number sealed with the client's address key, so it cannot be forged, moved to
another address or moved forward in the line. The holder comes back every `retry_after`
seconds with it; tickets are admitted in sequence order as sessions end or expire. A
ticket not shown for a while gives its place up; shown again, it takes its place back (its
number is in the seal), so a restart of the node keeps the line.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from majlis.admission.seal import seal, sealed_by

# A ticket is good for this long after it was issued: the longest anyone waits in line.
TICKET_LIFETIME_S = 4 * 3600
# How often a waiting client asks again: each second at the head of the line, less often
# further back (position / POLL_STEP seconds, at most MAX_POLL_S): a line of 100,000
# costs about 3,500 requests a second.
POLL_STEP = 20
MAX_POLL_S = 30
# A ticket not shown for two of its polling intervals plus this slack leaves the line.
IDLE_SLACK_S = 10
# Admission of this many recent tickets gives the pace used for the waiting estimate.
PACE_SAMPLES = 50
MAX_WAITING = 1_000_000
# The live session count is recounted at most this often (it walks every session).
RECOUNT_S = 1.0


class TicketRefused(Exception):
    """A ticket that admits nobody; the message says why."""


class LineFull(Exception):
    """The waiting room itself is full."""


@dataclass(frozen=True, slots=True)
class Admitted:
    ticketed: bool


@dataclass(frozen=True, slots=True)
class Waiting:
    ticket: str
    position: int
    retry_after: int
    estimate_s: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "waiting": True,
            "position": self.position,
            "retry_after": self.retry_after,
            "estimate_s": self.estimate_s,
            "ticket": self.ticket,
        }


def poll_interval(position: int) -> int:
    return min(MAX_POLL_S, 1 + position // POLL_STEP)


class AdmittedCount:
    """Live listener sessions of the node: recounted at most every RECOUNT_S (a walk over
    every session), plus the admissions made since, so a burst cannot overshoot."""

    def __init__(self, recount: Callable[[float], int]) -> None:
        self._recount = recount
        self._at = -math.inf
        self._value = 0

    def value(self, now: float) -> int:
        if now - self._at >= RECOUNT_S:
            self._value, self._at = self._recount(now), now
        return self._value

    def add(self) -> None:
        self._value += 1


class WaitingRoom:
    def __init__(self, secret: bytes, capacity: int) -> None:
        self._secret = secret
        self.capacity = capacity  # 0: unlimited
        self._line: list[int] = []  # ticket numbers, ascending
        self._deadline: dict[int, float] = {}  # ticket number -> leaves the line after
        self._used: dict[int, float] = {}  # admitted ticket numbers -> ticket expiry
        self._last_number = 0
        self._pace: deque[float] = deque(maxlen=PACE_SAMPLES)
        self._pruned_at = -math.inf

    def __len__(self) -> int:
        return len(self._line)

    def waiting(self, now: float) -> int:
        """People in line now: tickets shown recently enough."""
        self._prune(now)
        return len(self._line)

    def decide(
        self, admitted: int, ticket: str | None, client: str, now: float
    ) -> Admitted | Waiting:
        """Admit, or say where in the line the client waits. ``admitted`` is the number of
        live sessions now; raises TicketRefused for a bad ticket, LineFull past MAX_WAITING."""
        self._prune(now)
        if ticket is not None:
            return self._with_ticket(admitted, ticket, client, now)
        if self.capacity == 0 or admitted + len(self._line) < self.capacity:
            return Admitted(ticketed=False)
        if len(self._line) >= MAX_WAITING:
            raise LineFull("the waiting room is full")
        number = self._last_number = max(self._last_number + 1, int(now * 1000))
        expires = int(now) + TICKET_LIFETIME_S
        mac = seal(self._secret, "ticket", str(number), str(expires), client)
        self._line.append(number)
        return self._wait(f"{number}.{expires}.{mac}", number, now)

    def _with_ticket(
        self, admitted: int, ticket: str, client: str, now: float
    ) -> Admitted | Waiting:
        number, expires = self._open(ticket, client, now)
        if number in self._used:
            raise TicketRefused("this ticket was already used")
        if number not in self._deadline:
            bisect.insort(self._line, number)
        position = bisect.bisect_left(self._line, number) + 1
        if self.capacity == 0 or position <= self.capacity - admitted:
            self._line.pop(position - 1)
            self._deadline.pop(number, None)
            self._used[number] = expires
            self._pace.append(now)
            return Admitted(ticketed=True)
        return self._wait(ticket, number, now)

    def _open(self, ticket: str, client: str, now: float) -> tuple[int, int]:
        parts = ticket.split(".")
        if len(parts) != 3 or not all(p.isascii() and p for p in parts):
            raise TicketRefused("the ticket is malformed")
        number_s, expires_s, mac = parts
        if not sealed_by(self._secret, mac, "ticket", number_s, expires_s, client):
            raise TicketRefused("the ticket was not issued to this address by this server")
        if now >= int(expires_s):
            raise TicketRefused("the ticket has expired")
        return int(number_s), int(expires_s)

    def _wait(self, ticket: str, number: int, now: float) -> Waiting:
        position = bisect.bisect_left(self._line, number) + 1
        retry = poll_interval(position)
        self._deadline[number] = now + 2 * retry + IDLE_SLACK_S
        return Waiting(ticket, position, retry, self._estimate(position, now))

    def _estimate(self, position: int, now: float) -> int | None:
        """Seconds until admitted at the pace of the latest admissions from the line."""
        if len(self._pace) < 2 or now <= self._pace[0]:
            return None
        rate = (len(self._pace) - 1) / (self._pace[-1] - self._pace[0] or 1e-9)
        # Nobody admitted for a long time: the pace of the past says nothing.
        if now - self._pace[-1] > 10 * MAX_POLL_S:
            return None
        return math.ceil(position / rate)

    def _prune(self, now: float) -> None:
        """Tickets not shown in time leave the line; used ones are forgotten when they expire."""
        if now - self._pruned_at < 1.0:
            return
        self._pruned_at = now
        gone = {n for n, t in self._deadline.items() if t < now}
        if gone:
            self._line = [n for n in self._line if n not in gone]
            for n in gone:
                del self._deadline[n]
        for n in [n for n, t in self._used.items() if t <= now]:
            del self._used[n]
