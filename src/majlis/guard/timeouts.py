"""Deadlines for slow clients (slowloris): the request head, the body's rate, idleness."""

from __future__ import annotations

from dataclasses import dataclass

from majlis.errors import MajlisError


@dataclass(frozen=True, slots=True)
class Timeouts:
    # A request head (request line and headers) must arrive whole within this many seconds
    # of its first byte, or of the connection being accepted.
    head_s: float = 5.0
    # A keep-alive connection with no request in flight is closed after this long.
    idle_s: float = 30.0
    # A request body must keep up this many bytes per second on average, measured from
    # when its head arrived, after a grace of `body_grace_s`.
    min_body_rate: float = 4096.0
    body_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if self.head_s <= 0 or self.idle_s <= 0 or self.body_grace_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.min_body_rate < 0:
            raise ValueError("the minimum body rate must be >= 0 (0 turns it off)")


def body_too_slow(received: int, elapsed: float, timeouts: Timeouts) -> bool:
    """Has a body that started `elapsed` seconds ago fallen below the minimum rate?

    The grace lets a client on a slow link start; after it the body must average the
    minimum rate over its whole life, so a trickle of a few bytes a second is cut however
    long it goes on, while a burst that pauses briefly is not.
    """
    if timeouts.min_body_rate <= 0 or elapsed <= timeouts.body_grace_s:
        return False
    return received < timeouts.min_body_rate * (elapsed - timeouts.body_grace_s)


class RequestTimeout(MajlisError):
    status = 408
    code = "request_timeout"
