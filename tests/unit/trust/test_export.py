"""Export without a server: a recording made by the real packager, the database row by hand."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import c2pa
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from majlis.config import SAMPLE_RATE
from majlis.packaging.cmaf import init_segment
from majlis.packaging.encoder import AAC_PRIMING_SAMPLES
from majlis.packaging.playlist import SegmentEntry
from majlis.packaging.segmenter import Segmenter
from majlis.storage.database import SCHEMA
from majlis.storage.recording import Recording
from majlis.trust.export import (
    Credentials,
    ExportError,
    ProgressBar,
    export_space,
    read_space,
    signing_algorithm,
)
from tests.support.audio import decode_mp4, tone_power
from tests.support.certs import LeafKey, make_pki
from tests.unit.packaging.tone import TONE_HZ, encode, tone_with_onset

SPACE = "sp-1"
STARTED = 1_700_000_000.25


def _record(data: Path, status: str = "ended", seconds: float = 2.5) -> bytes:
    """Package a tone as the pipeline does; returns init + segments, the replay's bytes."""
    encoded = encode(tone_with_onset(seconds))
    init = init_segment(
        sample_rate=SAMPLE_RATE,
        channels=1,
        asc=encoded.asc,
        bitrate=encoded.bitrate,
        priming=AAC_PRIMING_SAMPLES,
    )
    recording = Recording(data / "spaces" / SPACE)
    recording.write_init(init)
    segmenter = Segmenter(part_frames=10, segment_parts=5)
    parts: dict[int, list[bytes]] = {}
    durations: dict[int, float] = {}
    for packet in encoded.packets:
        if (part := segmenter.add(packet, STARTED)) is not None:
            parts.setdefault(part.msn, []).append(part.data)
            durations[part.msn] = durations.get(part.msn, 0.0) + part.duration
    for msn, blobs in parts.items():
        entry = SegmentEntry(msn, durations[msn], STARTED + msn)
        recording.write_segment(entry, b"".join(blobs))
    with sqlite3.connect(data / "majlis.sqlite3") as db:
        db.executescript(SCHEMA)
        row = (SPACE, "A title", status, STARTED - 5, STARTED, STARTED + seconds)
        db.execute("INSERT INTO spaces VALUES (?, ?, ?, ?, ?, ?)", row)
    db.close()
    return init + b"".join(b"".join(parts[m]) for m in sorted(parts))


def test_unsigned_export_is_the_replay(tmp_path: Path) -> None:
    replay = _record(tmp_path)
    seen: list[tuple[int, int]] = []
    result = export_space(
        tmp_path, SPACE, tmp_path / "out.m4a", None, lambda d, t: seen.append((d, t))
    )
    assert not result.signed and result.segments == 3
    assert seen[-1][0] == seen[-1][1] == len(replay)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    exported = decode_mp4((tmp_path / "out.m4a").read_bytes())
    assert np.array_equal(exported, decode_mp4(replay))
    assert tone_power(exported[SAMPLE_RATE // 2 :], TONE_HZ) > 0.9
    record = result.manifest["assertions"][1]["data"]
    assert record["started_at"] == "2023-11-14T22:13:20.250000Z"
    assert record["segments"] == 3 and record["replay_provenance"] is None


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        (ec.generate_private_key(ec.SECP384R1()), "es384"),
        (ed25519.Ed25519PrivateKey.generate(), "ed25519"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "ps256"),
    ],
)
def test_other_key_types_sign(key: LeafKey, alg: str, tmp_path: Path) -> None:
    _record(tmp_path, seconds=1.2)
    pki = make_pki(tmp_path / "pki", key)
    assert signing_algorithm(pki.key.read_bytes()) == alg
    out = tmp_path / "out.m4a"
    export_space(tmp_path, SPACE, out, Credentials.load(pki.cert, pki.key))
    with open(out, "rb") as f, c2pa.Reader("audio/mp4", f) as reader:
        assert reader.get_validation_state() == "Valid"
        manifest = reader.get_active_manifest()
    assert manifest["signature_info"]["alg"].lower() == alg


def test_unsupported_curve_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256K1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ExportError, match="cannot sign with curve secp256k1"):
        signing_algorithm(key)


def test_space_states(tmp_path: Path) -> None:
    _record(tmp_path, status="scheduled")
    with pytest.raises(ExportError, match="space sp-1 is scheduled: only an ended space"):
        read_space(tmp_path, SPACE)
    with pytest.raises(ExportError, match="is not a space id"):
        read_space(tmp_path, "a/b")
    with pytest.raises(ExportError, match="no space sp-2 in"):
        read_space(tmp_path, "sp-2")


def test_provenance_that_is_not_json_is_refused(tmp_path: Path) -> None:
    _record(tmp_path)
    (tmp_path / "spaces" / SPACE / "provenance.json").write_text("{not json")
    with pytest.raises(ExportError, match=r"provenance\.json is not valid JSON"):
        export_space(tmp_path, SPACE, tmp_path / "out.m4a", None)
    (tmp_path / "spaces" / SPACE / "provenance.json").write_text("[1]")
    with pytest.raises(ExportError, match="not a JSON object"):
        export_space(tmp_path, SPACE, tmp_path / "out.m4a", None)
    assert not (tmp_path / "out.m4a").exists()


def test_provenance_listing_other_segments_is_refused(tmp_path: Path) -> None:
    _record(tmp_path)
    document = {"segments": [{"msn": 0, "sha256": "00" * 32}], "chain_head": "x"}
    (tmp_path / "spaces" / SPACE / "provenance.json").write_text(json.dumps(document))
    with pytest.raises(ExportError, match="lists 1 segments, the recording has 3"):
        export_space(tmp_path, SPACE, tmp_path / "out.m4a", None)


def test_progress_bar_redraws_only_on_change() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, "export", width=10)
    for done in (0, 1, 2, 50, 51, 100):
        bar(done, 100)
    bar.finish()
    frames = out.getvalue().split("\r")[1:]
    assert frames == [
        "export [..........]   0%",
        "export [..........]   1%",
        "export [..........]   2%",
        "export [#####.....]  50%",
        "export [#####.....]  51%",
        "export [##########] 100%\n",
    ]
    empty = io.StringIO()
    ProgressBar(empty, "x").finish()
    assert empty.getvalue() == ""
