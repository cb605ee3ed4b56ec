"""The provenance document: canonical form, signing, and the shape checks of `parse`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from majlis.packaging.playlist import SegmentEntry
from majlis.storage.recording import Recording
from majlis.trust import clip, provenance
from majlis.trust.chain import Chain, sha256
from majlis.trust.keys import SigningKey, key_id, load_or_create

KEY_A = SigningKey.generate()
FACTS = provenance.SpaceFacts("sp-1", "عنوان the title", 1_700_000_000.25, 1_700_000_060.5)


def _chain(n: int = 3) -> Chain:
    chain = Chain("sp-1", sha256(b"init"))
    for msn in range(n):
        chain.append(msn, sha256(bytes([msn]) * 100), 1.0666666666666667)
    return chain


def test_canonical_form_is_sorted_compact_utf8_without_signature() -> None:
    doc = {"b": 1, "a": "é", "signature": "x", "c": [1, {"z": None, "y": True}]}
    assert provenance.canonical(doc) == '{"a":"é","b":1,"c":[1,{"y":true,"z":null}]}'.encode()


def test_document_fields() -> None:
    chain = _chain()
    doc = provenance.build(FACTS, chain, ended=False, key_id="k")
    assert doc["signature"] is None and doc["ended"] is False
    assert doc["init"] == {"uri": "init.mp4", "sha256": sha256(b"init").hex()}
    assert [s["uri"] for s in doc["segments"]] == ["s/0.m4s", "s/1.m4s", "s/2.m4s"]
    assert doc["segments"][2]["link"] == doc["chain_head"] == chain.head.hex()
    assert doc["segments"][0]["duration"] == 1.0666666666666667


def test_signed_document_verifies_and_survives_a_json_round_trip() -> None:
    key = SigningKey.generate()
    signed = provenance.sign(provenance.build(FACTS, _chain(), ended=True, key_id=""), key)
    assert signed["key_id"] == key.key_id
    reread = json.loads(provenance.to_json(signed))
    assert provenance.signature_valid(reread, key.public)
    assert not provenance.signature_valid(reread, SigningKey.generate().public)


@pytest.mark.parametrize(
    ("field", "value"),
    [("title", "another title"), ("ended_at", 1.0), ("chain_head", "00" * 32), ("ended", False)],
)
def test_any_change_invalidates_the_signature(field: str, value: object) -> None:
    key = SigningKey.generate()
    signed = provenance.sign(provenance.build(FACTS, _chain(), ended=True, key_id=""), key)
    assert not provenance.signature_valid({**signed, field: value}, key.public)


def test_garbage_signatures_are_invalid_not_errors() -> None:
    key = SigningKey.generate()
    signed = provenance.sign(provenance.build(FACTS, _chain(), ended=True, key_id=""), key)
    for bad in (None, 12, "not base64!", base64.b64encode(b"short").decode()):
        assert not provenance.signature_valid({**signed, "signature": bad}, key.public)


def test_parse_reads_back_the_chain() -> None:
    chain = _chain()
    parsed = provenance.parse(json.loads(provenance.to_json(
        provenance.build(FACTS, chain, ended=True, key_id="k")
    )))  # fmt: skip
    assert parsed.links == tuple(chain.links)
    assert parsed.chain_head == chain.head and parsed.init_sha256 == sha256(b"init")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "unknown provenance version 2"),
        ({"segments": {}}, "segments is not a list"),
        ({"chain_head": "zz"}, "chain_head is not a 64-character hex SHA-256"),
        ({"segments": [{"msn": -1}]}, r"segments\[0\].msn is not a segment number"),
        ({"init": {"uri": "x.mp4"}}, "init is not"),
        ({"key_id": 5}, "space_id, key_id or ended"),
    ],
)
def test_parse_names_the_wrong_field(change: dict[str, object], message: str) -> None:
    doc = provenance.build(FACTS, _chain(), ended=True, key_id="k")
    with pytest.raises(ValueError, match=message):
        provenance.parse({**doc, **change})
    with pytest.raises(ValueError, match="not a JSON object"):
        provenance.parse([doc])


def test_key_file_is_created_once_owner_only_and_reread(tmp_path: Path) -> None:
    path = tmp_path / "signing_key"
    key = load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_or_create(path)
    assert again.public == key.public
    assert key.key_id == key_id(key.public.raw) == sha256(key.public.raw).hex()[:16]
    assert key.public.describe()["algorithm"] == "Ed25519"


def test_chain_from_recording_matches_the_live_chain(tmp_path: Path) -> None:
    recording = Recording(tmp_path / "space")
    recording.write_init(b"init")
    live = Chain("sp-1", sha256(b"init"))
    for msn in range(4):
        data = bytes([msn]) * 50
        recording.write_segment(SegmentEntry(msn, 1.0666666666666667, 0.0), data)
        live.append(msn, sha256(data), 1.0666666666666667)
    rebuilt = provenance.chain_from_recording("sp-1", recording)
    assert rebuilt is not None and rebuilt.links == live.links
    assert provenance.chain_from_recording("sp-1", Recording(tmp_path / "none")) is None


def test_a_restart_keeps_the_chain_and_ignores_the_new_init() -> None:
    log = provenance.ProvenanceLog("sp-1")
    log.start(b"init")
    log.add(0, sha256(b"a"), 1.0)
    log.start(b"init again")
    assert log.chain is not None and log.chain.init_sha256 == sha256(b"init")
    assert log.claim_seal() and not log.claim_seal()


# -- clips -------------------------------------------------------------------------------


def _source(n: int = 5) -> list[clip.SourceSegment]:
    return [clip.SourceSegment(m, f"{m:064x}", 1.0, discontinuity=m == 3) for m in range(n)]


@pytest.mark.parametrize(
    ("start", "end", "first", "last"),
    [(0, 1, 0, 0), (0.5, 1.5, 0, 1), (1.0, 2.0, 1, 1), (3.99, 100, 3, 4), (0, 5, 0, 4)],
)
def test_clip_takes_every_segment_overlapping_the_range(
    start: float, end: float, first: int, last: int
) -> None:
    cut = clip.select("sp", _source(), start, end)
    assert (cut.first, cut.last) == (first, last)
    assert clip.parse_clip_id(cut.clip_id) == cut


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [(1, 1, "0 <= from < to"), (-1, 1, "0 <= from < to"), (5, 6, "past the end of the replay")],
)
def test_clip_ranges_refused(start: float, end: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clip.select("sp", _source(), start, end)
    with pytest.raises(ValueError, match="not a clip id"):
        clip.parse_clip_id("sp.4-2")


def test_clip_playlist_lists_the_source_urls_and_its_discontinuity() -> None:
    text = clip.playlist(clip.ClipRange("sp", 2, 4), _source())
    assert text.splitlines()[-8:] == [
        "#EXTINF:1.00000,",
        "/live/sp/s/2.m4s",
        "#EXT-X-DISCONTINUITY",
        "#EXTINF:1.00000,",
        "/live/sp/s/3.m4s",
        "#EXTINF:1.00000,",
        "/live/sp/s/4.m4s",
        "#EXT-X-ENDLIST",
    ]
    assert '#EXT-X-MAP:URI="/live/sp/init.mp4"' in text
    with pytest.raises(ValueError, match="not in the replay"):
        clip.playlist(clip.ClipRange("sp", 3, 9), _source())


def test_clip_document_states_the_signed_hashes() -> None:
    source = provenance.sign(provenance.build(FACTS, _chain(3), ended=True, key_id=""), KEY_A)
    doc = clip.document(clip.ClipRange("sp-1", 1, 2), source)
    assert [s["sha256"] for s in doc["segments"]] == [s["sha256"] for s in source["segments"][1:]]
    assert doc["from"] == pytest.approx(1.0666667) and doc["to"] == pytest.approx(3.2)
    assert doc["source"]["chain_head"] == source["chain_head"]


def test_live_document_is_rebuilt_only_when_a_segment_is_added() -> None:
    log = provenance.ProvenanceLog("sp-1")
    assert log.live_json(FACTS, "k") is None
    log.start(b"init")
    first = log.live_json(FACTS, "k")
    assert first is not None and log.live_json(FACTS, "k") is first
    log.add(0, sha256(b"a"), 1.0)
    second = log.live_json(FACTS, "k")
    assert second is not first
    doc = json.loads(second or b"")
    assert doc["signature"] is None and doc["ended"] is False and len(doc["segments"]) == 1
