"""CMAF fMP4 boxes for one AAC-LC audio track (ISO/IEC 14496-12, 14496-14, 23000-19).

Written by hand rather than through a muxer so that every part ends exactly where the
packager decides (a muxer cuts a fragment only when the *next* packet arrives) and so that
a segment is, byte for byte, its parts joined: the property the replay and its proof rely on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

TRACK_ID = 1
# Unity matrix for tkhd/mvhd.
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _descriptor(tag: int, body: bytes) -> bytes:
    # Expandable size class, always 4 bytes: accepted by every parser and simple.
    size = len(body)
    encoded = bytes(
        [0x80 | ((size >> 21) & 0x7F), 0x80 | ((size >> 14) & 0x7F), 0x80 | ((size >> 7) & 0x7F)]
    ) + bytes([size & 0x7F])
    return bytes([tag]) + encoded + body


def _esds(audio_specific_config: bytes, bitrate: int) -> bytes:
    decoder_specific = _descriptor(0x05, audio_specific_config)
    decoder_config = _descriptor(
        0x04,
        # objectTypeIndication 0x40 = MPEG-4 Audio; streamType 5 (audio) << 2 | 1 (reserved).
        struct.pack(">BB3sII", 0x40, 0x15, (6144).to_bytes(3, "big"), bitrate, bitrate)
        + decoder_specific,
    )
    sl_config = _descriptor(0x06, b"\x02")
    es = _descriptor(0x03, struct.pack(">HB", TRACK_ID, 0) + decoder_config + sl_config)
    return full_box(b"esds", 0, 0, es)


def _mp4a(sample_rate: int, channels: int, asc: bytes, bitrate: int) -> bytes:
    return box(
        b"mp4a",
        b"\x00" * 6,
        struct.pack(">H", 1),  # data_reference_index
        b"\x00" * 8,
        struct.pack(">HHHH", channels, 16, 0, 0),
        struct.pack(">I", sample_rate << 16),
        _esds(asc, bitrate),
    )


def init_segment(
    *, sample_rate: int, channels: int, asc: bytes, bitrate: int, priming: int
) -> bytes:
    """`ftyp` + `moov` for a fragmented audio track.

    ``priming`` samples (AAC's encoder delay) are skipped by an edit list, so players that
    honour it start exactly at the first real sample.
    """
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6cmfcmp41dash")
    mvhd = full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, 1000, 0),
        struct.pack(">IH", 0x00010000, 0x0100), b"\x00" * 10, _MATRIX, b"\x00" * 24,
        struct.pack(">I", TRACK_ID + 1),
    )  # fmt: skip
    tkhd = full_box(
        b"tkhd", 0, 0x3,
        struct.pack(">IIIII", 0, 0, TRACK_ID, 0, 0),
        b"\x00" * 8, struct.pack(">hhhH", 0, 0, 0x0100, 0), _MATRIX, struct.pack(">II", 0, 0),
    )  # fmt: skip
    elst = full_box(b"elst", 0, 0, struct.pack(">IIiHH", 1, 0, priming, 1, 0))
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, sample_rate, 0, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s", 0, b"soun"), b"\x00" * 12, b"Majlis\x00")
    dref = full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1))
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1), _mp4a(sample_rate, channels, asc, bitrate))
    stbl = box(
        b"stbl",
        stsd,
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = box(b"minf", full_box(b"smhd", 0, 0, b"\x00" * 4), box(b"dinf", dref), stbl)
    trak = box(b"trak", tkhd, box(b"edts", elst), box(b"mdia", mdhd, hdlr, minf))
    # Audio samples are all sync samples: sample_depends_on = 2 (depends on no other).
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK_ID, 1, 1024, 0, 0x02000000))
    moov = box(b"moov", mvhd, trak, box(b"mvex", trex))
    return ftyp + moov


def fragment(sequence: int, base_decode_time: int, frames: list[bytes], duration: int) -> bytes:
    """One `moof` + `mdat` holding ``frames`` (each ``duration`` ticks long)."""
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    # default-base-is-moof: data offsets count from the start of this moof (CMAF).
    tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", TRACK_ID))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))
    trun_flags = 0x000001 | 0x000100 | 0x000200
    samples = b"".join(struct.pack(">II", duration, len(f)) for f in frames)
    trun_size = 12 + 8 + len(samples)
    traf_size = 8 + len(tfhd) + len(tfdt) + trun_size
    moof_size = 8 + len(mfhd) + traf_size
    data_offset = moof_size + 8
    trun = full_box(b"trun", 0, trun_flags, struct.pack(">Ii", len(frames), data_offset), samples)
    moof = box(b"moof", mfhd, box(b"traf", tfhd, tfdt, trun))
    return moof + box(b"mdat", *frames)


@dataclass(frozen=True, slots=True)
class Box:
    kind: str
    offset: int
    size: int


def iter_boxes(data: bytes) -> Iterator[Box]:
    """Top-level boxes of ``data``; raises ValueError on a truncated or malformed box."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < 8:
            raise ValueError(f"truncated box header at offset {offset}")
        size, kind = struct.unpack_from(">I4s", data, offset)
        if size < 8 or offset + size > len(data):
            raise ValueError(f"box {kind!r} at offset {offset} has invalid size {size}")
        yield Box(kind.decode("latin-1"), offset, size)
        offset += size
