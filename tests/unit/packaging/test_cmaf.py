"""CMAF boxes: field by field with a box walker, then through PyAV and Debian's ffprobe."""

from __future__ import annotations

import io
import json
import struct
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from majlis.config import AAC_FRAME_SAMPLES, SAMPLE_RATE
from majlis.packaging.cmaf import Box, fragment, init_segment, iter_boxes
from majlis.packaging.encoder import AAC_PRIMING_SAMPLES
from tests.support.audio import dominant_frequency
from tests.unit.mp4 import children, descriptors, find
from tests.unit.packaging.tone import ONSET, TONE_HZ, Encoded


def make_init(enc: Encoded) -> bytes:
    return init_segment(
        sample_rate=SAMPLE_RATE,
        channels=1,
        asc=enc.asc,
        bitrate=enc.bitrate,
        priming=AAC_PRIMING_SAMPLES,
    )


def make_fragments(enc: Encoded, per_fragment: int = 10) -> list[bytes]:
    out = []
    whole = len(enc.packets) // per_fragment
    for k in range(whole):
        frames = enc.packets[k * per_fragment : (k + 1) * per_fragment]
        out.append(fragment(k + 1, k * per_fragment * AAC_FRAME_SAMPLES, frames, AAC_FRAME_SAMPLES))
    return out


def test_init_segment_top_level(encoded_tone: Encoded) -> None:
    init = make_init(encoded_tone)
    assert [n.kind for n in children(init)] == ["ftyp", "moov"]
    ftyp = find(init, "ftyp").payload
    assert ftyp[:4] == b"iso6"
    brands = {ftyp[i : i + 4] for i in range(8, len(ftyp), 4)}
    assert {b"iso6", b"cmfc"} <= brands


def test_init_segment_timescales_and_track(encoded_tone: Encoded) -> None:
    init = make_init(encoded_tone)
    version, _, mvhd = find(init, "moov/mvhd").full()
    assert version == 0
    _, _, movie_timescale, movie_duration = struct.unpack_from(">IIII", mvhd)
    # The movie timescale only measures the (empty) edit durations; the track's is 48 kHz.
    assert movie_timescale == 1000
    assert movie_duration == 0
    assert struct.unpack_from(">I", mvhd, len(mvhd) - 4)[0] == 2  # next_track_ID

    _, flags, tkhd = find(init, "moov/trak/tkhd").full()
    assert flags & 0x3 == 0x3  # enabled, in movie
    assert struct.unpack_from(">I", tkhd, 8)[0] == 1  # track_ID
    assert struct.unpack_from(">H", tkhd, 32)[0] == 0x0100  # full volume: an audio track

    _, _, mdhd = find(init, "moov/trak/mdia/mdhd").full()
    _, _, timescale, duration, language = struct.unpack_from(">IIIIH", mdhd)
    assert timescale == SAMPLE_RATE == 48_000
    assert duration == 0
    assert language == 0x55C4  # "und"

    _, _, hdlr = find(init, "moov/trak/mdia/hdlr").full()
    assert hdlr[4:8] == b"soun"

    _, _, trex = find(init, "moov/mvex/trex").full()
    track, desc, sample_duration, _, sample_flags = struct.unpack(">IIIII", trex)
    assert (track, desc, sample_duration) == (1, 1, AAC_FRAME_SAMPLES)
    assert sample_flags == 0x02000000  # every AAC frame is a sync sample


def test_edit_list_skips_the_encoder_priming(encoded_tone: Encoded) -> None:
    init = make_init(encoded_tone)
    _, _, elst = find(init, "moov/trak/edts/elst").full()
    count, segment_duration, media_time, rate, _ = struct.unpack(">IIiHH", elst)
    assert count == 1
    assert segment_duration == 0  # fragmented: the edit runs to the end
    assert media_time == AAC_PRIMING_SAMPLES == 1024
    assert rate == 1


def test_sample_entry_carries_the_audio_specific_config(encoded_tone: Encoded) -> None:
    init = make_init(encoded_tone)
    _, _, stsd = find(init, "moov/trak/mdia/minf/stbl/stsd").full()
    assert struct.unpack_from(">I", stsd)[0] == 1
    entries = children(stsd[4:])
    assert [e.kind for e in entries] == ["mp4a"]
    mp4a = entries[0].payload
    assert struct.unpack_from(">H", mp4a, 6)[0] == 1  # data_reference_index
    channels, sample_size = struct.unpack_from(">HH", mp4a, 16)
    assert (channels, sample_size) == (1, 16)
    assert struct.unpack_from(">I", mp4a, 24)[0] == SAMPLE_RATE << 16
    esds = children(mp4a[28:])
    assert [e.kind for e in esds] == ["esds"]
    desc = descriptors(esds[0].full()[2])
    assert desc[0x05] == encoded_tone.asc
    object_type, stream_type = desc[0x04][0], desc[0x04][1] >> 2
    assert (object_type, stream_type) == (0x40, 5)  # MPEG-4 audio, audio stream
    max_rate, avg_rate = struct.unpack_from(">II", desc[0x04], 5)
    assert max_rate == avg_rate == encoded_tone.bitrate
    assert desc[0x06] == b"\x02"


def test_fragment_fields(encoded_tone: Encoded) -> None:
    frames = encoded_tone.packets[:10]
    data = fragment(7, 123 * AAC_FRAME_SAMPLES, frames, AAC_FRAME_SAMPLES)
    top = list(iter_boxes(data))
    assert [b.kind for b in top] == ["moof", "mdat"]
    moof, mdat = top

    _, _, mfhd = find(data, "moof/mfhd").full()
    assert struct.unpack(">I", mfhd)[0] == 7
    _, tfhd_flags, tfhd = find(data, "moof/traf/tfhd").full()
    assert tfhd_flags == 0x020000  # default-base-is-moof
    assert struct.unpack(">I", tfhd)[0] == 1
    version, _, tfdt = find(data, "moof/traf/tfdt").full()
    assert version == 1
    assert struct.unpack(">Q", tfdt)[0] == 123 * 1024

    _, trun_flags, trun = find(data, "moof/traf/trun").full()
    assert trun_flags == 0x000301  # data offset, sample durations, sample sizes
    count, data_offset = struct.unpack_from(">Ii", trun)
    assert count == len(frames)
    samples = [struct.unpack_from(">II", trun, 8 + 8 * i) for i in range(count)]
    assert [d for d, _ in samples] == [AAC_FRAME_SAMPLES] * count
    assert [s for _, s in samples] == [len(f) for f in frames]

    # The data offset counts from the moof and lands on the first byte of mdat's payload.
    assert data_offset == moof.size + 8 == mdat.offset + 8
    payload = data[moof.offset + data_offset : mdat.offset + mdat.size]
    assert payload == b"".join(frames)
    offset = moof.offset + data_offset
    for frame, (_, size) in zip(frames, samples, strict=True):
        assert data[offset : offset + size] == frame
        offset += size


def test_iter_boxes_rejects_broken_input() -> None:
    good = fragment(1, 0, [b"\x01\x02"], AAC_FRAME_SAMPLES)
    assert [b.kind for b in iter_boxes(good)] == ["moof", "mdat"]
    assert list(iter_boxes(b"")) == []
    with pytest.raises(ValueError) as exc:
        list(iter_boxes(good + b"\x00\x00\x00"))
    assert str(exc.value) == f"truncated box header at offset {len(good)}"
    with pytest.raises(ValueError) as exc:
        list(iter_boxes(good[:-1]))
    moof = next(iter_boxes(good))
    assert str(exc.value) == f"box b'mdat' at offset {moof.size} has invalid size 10"
    with pytest.raises(ValueError) as exc:
        list(iter_boxes(struct.pack(">I4s", 4, b"free")))
    assert str(exc.value) == "box b'free' at offset 0 has invalid size 4"


def test_iter_boxes_positions() -> None:
    data = struct.pack(">I4s", 8, b"free") + struct.pack(">I4s", 12, b"skip") + b"abcd"
    assert list(iter_boxes(data)) == [Box("free", 0, 8), Box("skip", 8, 12)]


def test_pyav_decodes_init_plus_fragments(encoded_tone: Encoded) -> None:
    fragments = make_fragments(encoded_tone)
    frames = 10 * len(fragments)
    media = make_init(encoded_tone) + b"".join(fragments)
    with av.open(io.BytesIO(media)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        assert stream.sample_rate == SAMPLE_RATE
        assert stream.codec_context.layout.nb_channels == 1
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    # The edit list drops the encoder's priming: what is left lines up with the input.
    assert decoded.size == frames * AAC_FRAME_SAMPLES - AAC_PRIMING_SAMPLES
    onset = int(np.argmax(np.abs(decoded) > 0.25))
    assert abs(onset - ONSET) <= 8, onset
    assert abs(dominant_frequency(decoded[ONSET:]) - TONE_HZ) < 5


def test_ffprobe_accepts_the_stream(encoded_tone: Encoded, tmp_path: Path) -> None:
    fragments = make_fragments(encoded_tone)
    path = tmp_path / "tone.mp4"
    path.write_bytes(make_init(encoded_tone) + b"".join(fragments))
    result = subprocess.run(
        [
            "ffprobe", "-v", "error", "-count_packets", "-of", "json",
            "-show_entries", "stream=codec_name,profile,sample_rate,channels,nb_read_packets",
            str(path),
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    (stream,) = json.loads(result.stdout)["streams"]
    assert stream["codec_name"] == "aac"
    assert stream["profile"] == "LC"
    assert stream["sample_rate"] == "48000"
    assert stream["channels"] == 1
    assert int(stream["nb_read_packets"]) == 10 * len(fragments)
