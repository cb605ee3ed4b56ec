"""`check` on replays built in memory: each difference is named once, precisely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from majlis.trust import provenance
from majlis.trust.chain import Chain, sha256
from majlis.trust.keys import SigningKey
from majlis.trust.verify import (
    Replay,
    Unusable,
    check,
    key_argument,
    parse_key,
    parse_media_playlist,
    verify,
)

KEY = SigningKey.generate()
INIT = b"init segment"
SEGMENTS = {msn: f"segment {msn} ".encode() * 20 for msn in range(6)}


def _document() -> dict[str, object]:
    chain = Chain("sp", sha256(INIT))
    for msn, data in SEGMENTS.items():
        chain.append(msn, sha256(data), 1.0666666666666667)
    facts = provenance.SpaceFacts("sp", "t", 1.0, 8.0)
    return provenance.sign(provenance.build(facts, chain, ended=True, key_id=""), KEY)


def replay(listed: list[int] | None = None) -> Replay:
    msns = list(SEGMENTS) if listed is None else listed
    uris = [f"s/{m}.m4s" for m in msns]
    return Replay(
        listed=uris,
        ended=True,
        init=INIT,
        document=json.loads(json.dumps(_document())),
        key=KEY.public,
        segments={u: SEGMENTS[m] for u, m in zip(uris, msns, strict=True) if m in SEGMENTS},
    )


def test_intact_replay() -> None:
    verdict = check(replay())
    assert verdict.intact
    assert verdict.render() == f"INTACT: 6 segments, 6.4 s, signed by key {KEY.key_id}"


def problems(r: Replay) -> list[str]:
    verdict = check(r)
    assert not verdict.intact
    assert verdict.render().startswith("TAMPERED:\n  - ")
    return list(verdict.problems)


def test_changed_content() -> None:
    r = replay()
    r.segments["s/4.m4s"] = b"edited"
    [problem] = problems(r)
    assert problem == (
        f"segment 4 (s/4.m4s): content changed (sha256 {sha256(b'edited').hex()[:16]}… != "
        f"{sha256(SEGMENTS[4]).hex()[:16]}…)"
    )


def test_missing_in_the_middle_and_truncated() -> None:
    assert problems(replay([0, 1, 3, 4, 5])) == ["segment 2 missing from playlist"]
    assert problems(replay([0, 1, 2, 3])) == [
        "playlist truncated: ends at segment 3 of 0–5 (4 of 6 segments listed)"
    ]
    assert problems(replay([])) == [
        "playlist truncated: lists no segment of 0–5 (0 of 6 segments listed)"
    ]


def test_out_of_order_extra_and_twice() -> None:
    assert problems(replay([0, 2, 1, 3, 4, 5])) == ["segments 1 and 2 out of order"]
    assert problems(replay([0, 1, 2, 3, 4, 5, 9])) == [
        "playlist lists s/9.m4s, which is not a segment of the signed replay"
    ]
    assert problems(replay([0, 1, 1, 2, 3, 4, 5])) == [
        "segment 1 (s/1.m4s) listed twice in the playlist"
    ]
    rotated = problems(replay([0, 2, 3, 1, 4, 5]))
    assert rotated == [
        "segments out of order: the playlist has 2, 3, 1 where the signed replay does not"
    ]


def test_swapped_bytes_and_moved_bytes() -> None:
    r = replay()
    r.segments["s/1.m4s"], r.segments["s/2.m4s"] = SEGMENTS[2], SEGMENTS[1]
    assert problems(r) == [
        "segments 1 and 2 out of order (s/1.m4s holds segment 2, s/2.m4s holds segment 1)"
    ]
    r = replay()
    r.segments["s/5.m4s"] = SEGMENTS[0]
    assert problems(r) == ["segment 5 (s/5.m4s): holds the content of segment 0"]


def test_unavailable_segment_and_init() -> None:
    r = replay()
    del r.segments["s/3.m4s"]
    r.unavailable["s/3.m4s"] = "not served (HTTP 404)"
    r.init = b"other init"
    found = problems(r)
    assert "segment 3 (s/3.m4s): not served (HTTP 404)" in found
    assert any(p.startswith("init segment (init.mp4): content changed") for p in found)


def test_no_endlist() -> None:
    r = replay()
    r.ended = False
    assert problems(r) == ["playlist has no EXT-X-ENDLIST: not a finished replay"]


def test_signature_and_key() -> None:
    r = replay()
    assert isinstance(r.document, dict)
    r.document["title"] = "a better title"
    assert problems(r) == [f"signature invalid (does not verify with key {KEY.key_id})"]
    r = replay()
    other = SigningKey.generate().public
    r.key = other
    assert problems(r) == [f"signed by key {KEY.key_id}, expected {other.key_id}"]
    r = replay()
    assert isinstance(r.document, dict)
    r.document["signature"] = None
    assert problems(r) == ["provenance is not signed: the space has not ended"]


def test_chain_edited_and_re_signed_by_someone_else_is_caught_by_the_chain() -> None:
    r = replay()
    assert isinstance(r.document, dict)
    segments = r.document["segments"]
    assert isinstance(segments, list)
    segments[2]["sha256"] = sha256(b"edited").hex()
    r.segments["s/2.m4s"] = b"edited"
    found = problems(r)
    assert "chain broken at segment 2: its link does not follow" in found


def test_malformed_document_is_unusable() -> None:
    r = replay()
    r.document = {"version": 1}
    with pytest.raises(Unusable, match="not a Majlis provenance document"):
        check(r)


def test_media_playlist_parsing() -> None:
    text = '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:1.0,\ns/0.m4s\n#EXT-X-ENDLIST\n'
    assert parse_media_playlist(text) == (["s/0.m4s"], True, "init.mp4")
    with pytest.raises(Unusable, match="no #EXTM3U"):
        parse_media_playlist("<html>")


def test_key_forms(tmp_path: Path) -> None:
    assert parse_key(KEY.public.base64) == KEY.public
    assert parse_key(json.dumps(KEY.public.describe())) == KEY.public
    assert parse_key(KEY.pem().decode()) == KEY.public
    (tmp_path / "key.json").write_text(json.dumps(KEY.public.describe()))
    assert key_argument(str(tmp_path / "key.json")) == KEY.public
    for bad in ("abc", "{}", "AAAA"):
        with pytest.raises(Unusable, match="--key"):
            key_argument(bad)


def test_verify_on_missing_and_empty_folders(tmp_path: Path) -> None:
    assert verify(str(tmp_path / "none"), None) == (
        2,
        f"cannot verify: {tmp_path}/none: no such folder",
    )
    code, message = verify(str(tmp_path), None)
    assert code == 2 and "has no provenance.json" in message
