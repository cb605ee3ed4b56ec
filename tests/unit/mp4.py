"""A small ISO BMFF reader for tests: walks boxes with `iter_boxes` and unpacks fields."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from majlis.packaging.cmaf import iter_boxes

# Boxes whose payload is nothing but child boxes.
CONTAINERS = {"moov", "trak", "mdia", "minf", "stbl", "dinf", "edts", "mvex", "moof", "traf"}


@dataclass(frozen=True, slots=True)
class Node:
    kind: str
    payload: bytes  # the bytes after the 8-byte header
    offset: int  # offset of the box header within the buffer it was read from

    def full(self) -> tuple[int, int, bytes]:
        """(version, flags, body) of a full box."""
        head = struct.unpack_from(">I", self.payload)[0]
        return head >> 24, head & 0xFFFFFF, self.payload[4:]


def children(data: bytes) -> list[Node]:
    return [
        Node(b.kind, data[b.offset + 8 : b.offset + b.size], b.offset) for b in iter_boxes(data)
    ]


def find(data: bytes, path: str) -> Node:
    """The first box at ``path`` ("moov/trak/mdia/mdhd"), descending through containers."""
    kinds = path.split("/")
    nodes = children(data)
    for depth, kind in enumerate(kinds):
        match = next((n for n in nodes if n.kind == kind), None)
        if match is None:
            raise KeyError(f"no {kind!r} box under {'/'.join(kinds[:depth]) or 'top level'}")
        if depth == len(kinds) - 1:
            return match
        nodes = children(match.payload) if kind in CONTAINERS else []
    raise AssertionError("unreachable")


def descriptors(data: bytes) -> dict[int, bytes]:
    """MPEG-4 descriptors (ISO/IEC 14496-1) by tag, flattened, nested ones included."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        tag = data[offset]
        offset += 1
        size = 0
        while True:
            byte = data[offset]
            offset += 1
            size = (size << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        body = data[offset : offset + size]
        found[tag] = body
        offset += size
        if tag == 0x03:  # ES_Descriptor: ES_ID(2) + flags(1), then nested descriptors
            found.update(descriptors(body[3:]))
        elif tag == 0x04:  # DecoderConfigDescriptor: 13 fixed bytes, then DecoderSpecificInfo
            found.update(descriptors(body[13:]))
    return found
