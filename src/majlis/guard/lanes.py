"""Which limits a request path falls under."""

from __future__ import annotations

import enum
import re

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


# What caching edges fetch on behalf of many listeners: playlists, init, parts, segments and
# the room state. Nothing else is cached, so nothing else is filled for a crowd.
_CACHEABLE = re.compile(
    r"/live/[A-Za-z0-9_-]{1,32}/"
    r"(?:[a-z]+\.m3u8|init\.mp4|state\.json|s/\d+\.m4s|p/(?:\d+/)?\d+\.\d+\.m4s)"
)


def edge_fill(method: str, path: str) -> bool:
    """A request an edge makes once for all its listeners (when it comes from one)."""
    return method in ("GET", "HEAD") and _CACHEABLE.fullmatch(path) is not None
