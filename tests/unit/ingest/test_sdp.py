"""check_offer: real clients' offers pass; every bound and malformation has its message."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc.sdp import SessionDescription

from majlis.errors import BadRequest, MajlisError, PayloadTooLarge
from majlis.ingest.sdp import (
    MAX_CANDIDATES,
    MAX_LINE_CHARS,
    MAX_LINES,
    MAX_MEDIA_SECTIONS,
    check_offer,
)

DATA = Path(__file__).parents[2] / "data" / "sdp"
LIMIT = 64 * 1024
CHROMIUM = (DATA / "chromium-audio.sdp").read_bytes()
OBS = (DATA / "obs30-opus-h264.sdp").read_bytes()


def lines(offer: bytes) -> list[str]:
    return offer.decode().split("\r\n")


def joined(parts: list[str]) -> bytes:
    return "\r\n".join(parts).encode()


def line_number(offer: bytes, prefix: str) -> int:
    return next(n for n, line in enumerate(lines(offer), start=1) if line.startswith(prefix))


def with_line_after(offer: bytes, prefix: str, extra: list[str]) -> bytes:
    parts = lines(offer)
    at = next(i for i, line in enumerate(parts) if line.startswith(prefix)) + 1
    return joined(parts[:at] + extra + parts[at:])


def replaced(offer: bytes, old: str, new: str) -> bytes:
    assert old.encode() in offer
    return offer.replace(old.encode(), new.encode(), 1)


def rejected(offer: bytes, error: type[MajlisError] = BadRequest, limit: int = LIMIT) -> str:
    with pytest.raises(error) as exc:
        check_offer(offer, limit)
    assert type(exc.value) is error
    return exc.value.message


# -- real clients -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "kinds"),
    [(CHROMIUM, ["audio"]), (OBS, ["audio", "video"])],
    ids=["chromium", "obs30"],
)
def test_real_client_offers_are_accepted(offer: bytes, kinds: list[str]) -> None:
    text = check_offer(offer, LIMIT)
    assert text == offer.decode()
    # The fixtures are what aiortc will parse next: they must be valid for it too.
    parsed = SessionDescription.parse(text)
    assert [m.kind for m in parsed.media] == kinds
    assert parsed.media[0].rtp.codecs[0].name == "opus"
    assert all(m.direction == "sendonly" for m in parsed.media)
    assert all(m.dtls is not None and m.dtls.fingerprints for m in parsed.media)


def test_obs_offer_carries_h264_video() -> None:
    video = SessionDescription.parse(OBS.decode()).media[1]
    assert [c.name for c in video.rtp.codecs] == ["H264"]


def test_lf_only_offer_is_accepted() -> None:
    assert check_offer(CHROMIUM.replace(b"\r\n", b"\n"), LIMIT)


def test_offer_at_the_size_limit_is_accepted() -> None:
    assert check_offer(CHROMIUM, len(CHROMIUM))


# -- rejected ---------------------------------------------------------------------------


def test_oversized() -> None:
    message = rejected(CHROMIUM, PayloadTooLarge, limit=len(CHROMIUM) - 1)
    assert message == f"SDP offer is {len(CHROMIUM)} bytes; the limit is {len(CHROMIUM) - 1}"


def test_not_utf8() -> None:
    offer = CHROMIUM.replace(b"s=-", b"s=caf\xe9", 1)
    assert rejected(offer) == "SDP offer is not UTF-8 text"


@pytest.mark.parametrize(
    "offer",
    [
        b"",
        joined(lines(CHROMIUM)[1:]),
        b"\r\n" + CHROMIUM,
        b"v=1\r\n" + joined(lines(CHROMIUM)[1:]),
        b"<html>not sdp</html>",
    ],
    ids=["empty", "no-version", "blank-first", "v1", "html"],
)
def test_missing_version_line(offer: bytes) -> None:
    assert rejected(offer) == "SDP offer must start with 'v=0'"


def test_no_media_line() -> None:
    session_only = joined(lines(CHROMIUM)[:7])
    assert rejected(session_only) == "SDP offer has no m= line"


def test_no_audio_media_line() -> None:
    offer = replaced(CHROMIUM, "m=audio ", "m=video ")
    assert rejected(offer) == "SDP offer has no audio m= line"


def test_no_fingerprint() -> None:
    parts = [line for line in lines(OBS) if not line.startswith("a=fingerprint:")]
    assert rejected(joined(parts)) == ("SDP offer has no a=fingerprint line: DTLS-SRTP is required")


def test_too_many_lines() -> None:
    padding = ["a=x-filler"] * MAX_LINES
    offer = joined(lines(CHROMIUM)[:-1] + padding + [""])
    count = len(lines(CHROMIUM)) + MAX_LINES
    assert rejected(offer) == f"SDP offer has {count} lines; the limit is {MAX_LINES}"


def test_line_too_long() -> None:
    offer = with_line_after(CHROMIUM, "a=mid:0", ["a=x-long:" + "y" * MAX_LINE_CHARS])
    number = line_number(CHROMIUM, "a=mid:0") + 1
    assert rejected(offer) == f"SDP line {number} is longer than {MAX_LINE_CHARS} characters"


def test_payload_type_out_of_range_in_media_line() -> None:
    mline = lines(CHROMIUM)[7]
    offer = replaced(CHROMIUM, mline, mline + " 128")
    assert rejected(offer) == "SDP line 8: payload type 128 is out of range 0-127"


def test_payload_type_out_of_range_in_rtpmap() -> None:
    offer = replaced(CHROMIUM, "a=rtpmap:126 ", "a=rtpmap:200 ")
    number = line_number(CHROMIUM, "a=rtpmap:126 ")
    assert rejected(offer) == f"SDP line {number}: payload type 200 is out of range 0-127"


@pytest.mark.parametrize(
    "mline",
    [
        "m=audio nine UDP/TLS/RTP/SAVPF 111",
        "m=audio 9",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111;",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 ²",  # isdigit() but not a number int() reads
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 ١٢٨",  # Arabic-Indic digits: not SDP's [0-9]
    ],
)
def test_malformed_media_line(mline: str) -> None:
    offer = replaced(CHROMIUM, lines(CHROMIUM)[7], mline)
    assert rejected(offer) == "SDP line 8 is not a valid m= line"


def test_too_many_candidates() -> None:
    extra = [
        f"a=candidate:{k} 1 udp 2122260223 10.0.{k // 250}.{k % 250} {50000 + k} typ host"
        for k in range(MAX_CANDIDATES - 2)
    ]
    offer = with_line_after(CHROMIUM, "a=rtcp:", extra)
    count = MAX_CANDIDATES + 1  # the fixture has three of its own
    assert rejected(offer) == f"SDP offer has {count} candidates; the limit is {MAX_CANDIDATES}"
    just_enough = with_line_after(CHROMIUM, "a=rtcp:", extra[1:])
    assert check_offer(just_enough, LIMIT)


def test_too_many_media_sections() -> None:
    section = lines(OBS)[lines(OBS).index("m=video 54321 UDP/TLS/RTP/SAVPF 96") :]
    count = MAX_MEDIA_SECTIONS + 1
    offer = joined(lines(OBS)[:-1] + section[:-1] * (count - 2) + [""])
    assert rejected(offer) == f"SDP offer has {count} media sections; the limit is {count - 1}"
