"""The hash chain over a recording's segments. Pure: bytes in, bytes out.

genesis = SHA-256("majlis-provenance-v1\\0" ‖ space id ‖ "\\0" ‖ SHA-256(init segment))
link_n  = SHA-256(link_{n-1} ‖ msn (u64 BE) ‖ SHA-256(segment) ‖ duration in µs (u64 BE))

Each link commits to everything before it, so a listener who noted the chain head at any
moment while live can later prove the replay's first segments are the ones they heard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

DOMAIN = b"majlis-provenance-v1\0"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def duration_us(seconds: float) -> int:
    """Durations enter the chain as whole microseconds: floats differ across printers."""
    return round(seconds * 1_000_000)


def genesis(space_id: str, init_sha256: bytes) -> bytes:
    return sha256(DOMAIN + space_id.encode("utf-8") + b"\0" + init_sha256)


def link(previous: bytes, msn: int, segment_sha256: bytes, duration: float) -> bytes:
    if msn < 0 or duration < 0:
        raise ValueError("segment number and duration must not be negative")
    return sha256(
        previous
        + msn.to_bytes(8, "big")
        + segment_sha256
        + duration_us(duration).to_bytes(8, "big")
    )


@dataclass(frozen=True, slots=True)
class Link:
    msn: int
    sha256: bytes  # of the segment's bytes
    duration: float  # seconds
    link: bytes


class Chain:
    """The chain of one recording, grown one durable segment at a time."""

    def __init__(self, space_id: str, init_sha256: bytes) -> None:
        self.space_id = space_id
        self.init_sha256 = init_sha256
        self.genesis = genesis(space_id, init_sha256)
        self.links: list[Link] = []

    @property
    def head(self) -> bytes:
        return self.links[-1].link if self.links else self.genesis

    def append(self, msn: int, segment_sha256: bytes, duration: float) -> Link:
        if self.links and msn <= self.links[-1].msn:
            raise ValueError(f"segment {msn} appended after segment {self.links[-1].msn}")
        entry = Link(msn, segment_sha256, duration, link(self.head, msn, segment_sha256, duration))
        self.links.append(entry)
        return entry


def first_broken_link(space_id: str, init_sha256: bytes, links: Sequence[Link]) -> int | None:
    """Index of the first link that does not follow from those before it, or None."""
    previous = genesis(space_id, init_sha256)
    for i, entry in enumerate(links):
        expected = link(previous, entry.msn, entry.sha256, entry.duration)
        if expected != entry.link:
            return i
        previous = expected
    return None
