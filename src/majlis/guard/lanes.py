"""Which limits a request path falls under."""

from __future__ import annotations

import enum

# Liveness and readiness probes are answered on any connection and never rate limited: a
# load balancer must see the truth most of all when the node is under load.
PROBES = frozenset({"/healthz", "/readyz"})


class Lane(enum.Enum):
    LISTENER = "listener"  # playlists, media, room state, sessions, pages, provenance, clips
    SPEAKER = "speaker"  # WHIP and the JSON API: few callers, reserved capacity
    PROBE = "probe"


def lane(path: str) -> Lane:
    if path in PROBES:
        return Lane.PROBE
    if path.startswith(("/whip/", "/api/")) or path in ("/whip", "/api", "/metrics"):
        return Lane.SPEAKER
    return Lane.LISTENER
