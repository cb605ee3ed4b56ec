"""First look at an SDP offer from the network, before aiortc parses it.

aiortc's parser trusts its input; these checks bound what reaches it and turn the common
mistakes into messages a publisher can act on.
"""

from __future__ import annotations

import re

from majlis.errors import BadRequest, PayloadTooLarge

MAX_LINES = 2_000
MAX_LINE_CHARS = 4_096
MAX_MEDIA_SECTIONS = 8
MAX_CANDIDATES = 100
# ASCII only: Unicode \w and \d admit "²" and "٣", which int() refuses or SDP forbids.
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ", re.ASCII)
# What aiortc's parser asserts of a connection line (a failed assert carries no message).
_CLINE = re.compile(r"^c=IN (IP4|IP6) [^ ]+$")
_DIRECTIONS = frozenset({"a=sendonly", "a=sendrecv", "a=recvonly", "a=inactive"})
# Formats are payload types, or tokens such as "webrtc-datachannel" (RFC 8841).
_MLINE = re.compile(r"^m=(\w+) \d+(?:/\d+)? [\w/]+((?: [\w-]+)*)$", re.ASCII)


def check_offer(body: bytes, max_bytes: int) -> str:
    """Return the offer as text, or raise a BadRequest that says what is wrong with it."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(f"SDP offer is {len(body)} bytes; the limit is {max_bytes}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("SDP offer is not UTF-8 text") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or lines[0].strip() != "v=0":
        raise BadRequest("SDP offer must start with 'v=0'")
    if len(lines) > MAX_LINES:
        raise BadRequest(f"SDP offer has {len(lines)} lines; the limit is {MAX_LINES}")
    media = [line for line in lines if line.startswith("m=")]
    if not media:
        raise BadRequest("SDP offer has no m= line")
    if len(media) > MAX_MEDIA_SECTIONS:
        raise BadRequest(
            f"SDP offer has {len(media)} media sections; the limit is {MAX_MEDIA_SECTIONS}"
        )
    if not any(line.startswith("m=audio ") for line in media):
        raise BadRequest("SDP offer has no audio m= line")
    # WebRTC media is DTLS-SRTP only (RFC 8827): without a fingerprint the connection could
    # never be secured, and aiortc would accept the offer, then fail in the background.
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise BadRequest("SDP offer has no a=fingerprint line: DTLS-SRTP is required")
    candidates = 0
    for number, line in enumerate(lines, start=1):
        _check_line(number, line)
        candidates += line.startswith("a=candidate:")
    if candidates > MAX_CANDIDATES:
        raise BadRequest(f"SDP offer has {candidates} candidates; the limit is {MAX_CANDIDATES}")
    _check_directions(lines)
    _check_bundle(lines)
    return text


def _check_directions(lines: list[str]) -> None:
    # RFC 4566 lets a section leave its direction out (sendrecv is then assumed), but
    # aiortc cannot answer such a section: say so rather than fail while answering.
    start, found = 0, False
    for number, line in enumerate([*lines, "m="], start=1):
        if line.startswith("m="):
            if start and not found:
                raise BadRequest(
                    f"SDP line {start}: media section has no direction attribute "
                    "(a=sendonly, a=sendrecv, a=recvonly or a=inactive)"
                )
            start, found = number, False
        found = found or line in _DIRECTIONS


def _check_bundle(lines: list[str]) -> None:
    # aiortc moves every section of a BUNDLE group onto the transport of the first mid it
    # names: a mid that no section has leaves them with none, and answering crashes.
    first_media = next(i for i, line in enumerate(lines) if line.startswith("m="))
    mids: dict[int, str] = {}  # section → its mid; like aiortc, the last a=mid counts
    section = 0
    for line in lines[first_media:]:
        section += line.startswith("m=")
        if line.startswith("a=mid:"):
            mids[section] = line[6:]
    for number, line in enumerate(lines[:first_media], start=1):
        bits = line[8:].split() if line.startswith("a=group:") else []
        for mid in bits[1:] if bits[:1] == ["BUNDLE"] else []:
            if mid not in mids.values():
                raise BadRequest(
                    f"SDP line {number}: BUNDLE names mid {mid[:32]!r}, which no media section has"
                )


def _check_line(number: int, line: str) -> None:
    if len(line) > MAX_LINE_CHARS:
        raise BadRequest(f"SDP line {number} is longer than {MAX_LINE_CHARS} characters")
    # aiortc splits with str.splitlines(), which also breaks at a lone \r, \x85, \u2028 and
    # others: a line hidden from these checks behind one of those would still reach aiortc.
    if len(line.splitlines()) > 1:
        raise BadRequest(f"SDP line {number} holds a line break other than CRLF or LF")
    if line.startswith("m="):
        match = _MLINE.match(line.strip())
        if not match:
            raise BadRequest(f"SDP line {number} is not a valid m= line")
        for fmt in match.group(2).split():
            if fmt.isdigit() and int(fmt) > 127:
                raise BadRequest(f"SDP line {number}: payload type {fmt} is out of range 0-127")
    elif line.startswith("c=") and not _CLINE.match(line):
        raise BadRequest(f"SDP line {number} is not a valid c= line ('c=IN IP4 <address>')")
    elif (rtpmap := _RTPMAP.match(line)) and int(rtpmap.group(1)) > 127:
        raise BadRequest(f"SDP line {number}: payload type {rtpmap.group(1)} is out of range 0-127")
