"""Every Redis key the cluster uses, in one place (docs/scale.md lists them for operators)."""

from __future__ import annotations

PREFIX = "majlis:"

# Strings made once by whichever node starts first (SET NX), read by all the others.
SECRET_TOKEN = PREFIX + "secret:token"
SECRET_ADMIN = PREFIX + "secret:admin"
SECRET_SIGNING = PREFIX + "secret:signing"
SECRET_SALT = PREFIX + "secret:audience_salt"

# Sorted set of every space id by creation time, and set of the spaces not yet ended.
SPACES = PREFIX + "spaces"
ACTIVE = PREFIX + "active"


def node(node_id: str) -> str:
    """The URL other nodes reach this node at; expires unless the node keeps beating."""
    return f"{PREFIX}node:{node_id}"


def space(space_id: str) -> str:
    """The space's record, stage and consents as one JSON document."""
    return f"{PREFIX}space:{space_id}"


def owner(space_id: str) -> str:
    """The id of the node that runs the space's pipeline, with the lease as its expiry."""
    return f"{PREFIX}owner:{space_id}"


def epoch(space_id: str) -> str:
    """How many times the space was taken over: a node writes the space's copy only while the
    epoch is the one it claimed the space under (a fencing token)."""
    return f"{PREFIX}epoch:{space_id}"


def init(space_id: str) -> str:
    return f"{PREFIX}rec:{space_id}:init"


def index(space_id: str) -> str:
    """List of the recorded segments' entries (JSON), in the order they were announced."""
    return f"{PREFIX}rec:{space_id}:index"


def segments(space_id: str) -> str:
    """Hash of msn -> the segment's bytes."""
    return f"{PREFIX}rec:{space_id}:segments"


def sealed(space_id: str) -> str:
    """The signed provenance document of an ended space."""
    return f"{PREFIX}rec:{space_id}:provenance"


def uniques(space_id: str, kind: str) -> str:
    """HyperLogLog of the listeners of a space (`live` or `replay`)."""
    return f"{PREFIX}audience:{space_id}:{kind}"


def rate(lane: str, window: int) -> str:
    """Hash of client key -> requests in one rate window, summed over every node."""
    return f"{PREFIX}rate:{lane}:{window}"
