"""Attack mode: when new listener sessions must bring a solved proof of work.

On for the whole node by the admin, for one space by its host, or by itself while new
session requests come faster than a threshold; it goes off again once a quiet period has
passed without a second over the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Status:
    """Why attack mode is on (or not) for one space, and the difficulty it asks."""

    node: int | None  # difficulty set by the admin, or None
    space: int | None  # difficulty set by the space's host, or None
    auto: int | None  # difficulty while the request rate is over the threshold, or None
    auto_until: float | None

    @property
    def difficulty(self) -> int | None:
        on = [d for d in (self.node, self.space, self.auto) if d is not None]
        return max(on) if on else None

    def to_json(self) -> dict[str, object]:
        return {
            "enabled": self.difficulty is not None,
            "difficulty": self.difficulty,
            "node": self.node,
            "space": self.space,
            "automatic": self.auto,
            "automatic_until": self.auto_until,
        }


class AttackMode:
    def __init__(
        self, difficulty: int, threshold_per_s: float, quiet_s: float, on: bool = False
    ) -> None:
        self.difficulty = difficulty
        self.threshold_per_s = threshold_per_s  # 0: never switched on by itself
        self.quiet_s = quiet_s
        self.node: int | None = difficulty if on else None
        self._spaces: dict[str, int] = {}
        self._second = -1
        self._count = 0
        self._auto_until = 0.0

    def note_request(self, now: float) -> None:
        """Count one new-session request; a second over the threshold switches it on."""
        second = int(now)
        if second != self._second:
            self._second, self._count = second, 0
        self._count += 1
        if self.threshold_per_s and self._count > self.threshold_per_s:
            self._auto_until = now + self.quiet_s

    def set_node(self, difficulty: int | None) -> None:
        self.node = difficulty

    def set_space(self, space_id: str, difficulty: int | None) -> None:
        if difficulty is None:
            self._spaces.pop(space_id, None)
        else:
            self._spaces[space_id] = difficulty

    def status(self, space_id: str | None, now: float) -> Status:
        auto = now < self._auto_until
        return Status(
            self.node,
            self._spaces.get(space_id) if space_id is not None else None,
            self.difficulty if auto else None,
            self._auto_until if auto else None,
        )
