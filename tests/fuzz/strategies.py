"""Hypothesis strategies for what arrives from the network: SDP offers, playlist queries, JSON.

Every strategy starts from the seed corpus and mutates it the way broken or hostile clients
do, so most examples stay close enough to valid input to reach the deep checks.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzz import corpus

# Deterministic and bounded: the same examples on every run and every machine, no database
# to commit, no per-example deadline (two shared cores make timings meaningless).
_FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


# A longer campaign than `make test` runs: MAJLIS_FUZZ_SCALE=20 MAJLIS_FUZZ_RANDOM=1
# bash scripts/test.sh tests/fuzz (twenty times the examples, new ones on every run).
SCALE = max(1, int(os.environ.get("MAJLIS_FUZZ_SCALE", "1")))
RANDOM = os.environ.get("MAJLIS_FUZZ_RANDOM") == "1"


def fuzz(max_examples: int) -> settings:
    """The fuzz suite's settings with its own bound on examples."""
    return settings(_FUZZ, max_examples=max_examples * SCALE, derandomize=not RANDOM)


Mutation = Callable[[st.DrawFn, list[bytes]], list[bytes]]

_PAYLOAD_LINE = re.compile(rb"^a=(rtpmap|fmtp|rtcp-fb):(\d+)")
_NUMBER = re.compile(rb"\d+")
_SAMPLE_CANDIDATE = b"a=candidate:%d 1 udp 2122260223 10.%d.%d.%d %d typ host generation 0"

# Lines publishers send, or could: drawn into offers, duplicated, broken.
_ATTRIBUTES = [
    b"a=rtpmap:111 opus/48000/2",
    b"a=fmtp:111 minptime=10;useinbandfec=1",
    b"a=rtcp-fb:111 transport-cc",
    b"a=rtcp-mux",
    b"a=sendonly",
    b"a=recvonly",
    b"a=inactive",
    b"a=setup:active",
    b"a=mid:0",
    b"a=group:BUNDLE 0 1 2",
    b"a=ice-ufrag:x",
    b"a=ice-pwd:y",
    b"a=end-of-candidates",
    b"a=fingerprint:sha-256 00",
    b"a=fingerprint:md5 zz",
    b"a=ssrc:1 cname:x",
    b"a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    b"a=candidate:1 1 udp 1 127.0.0.1 9 typ host",
    b"a=candidate:",
    b"c=IN IP4 0.0.0.0",
    b"c=IN IP6 ::1",
    b"m=audio 9 UDP/TLS/RTP/SAVPF 111",
    b"m=video 9 UDP/TLS/RTP/SAVPF 96",
    b"m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    b"m=audio 0 UDP/TLS/RTP/SAVPF 0",
    b"m=audio 9 RTP/AVP 0",
    b"a=rtpmap:96 H264/90000",
    b"a=rtpmap:111 opus/48000",
    b"a=rtpmap:111 opus",
    b"a=rtpmap:",
    b"a=fmtp:",
    b"a=sctp-port:5000",
    b"t=0 0",
    b"s=-",
    b"o=- 0 0 IN IP4 0.0.0.0",
    b"v=0",
]


def _pick_index(draw: st.DrawFn, lines: list[bytes]) -> int:
    return draw(st.integers(0, max(0, len(lines) - 1)))


def _drop_kind(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    prefix = draw(
        st.sampled_from(
            [b"m=", b"c=", b"v=", b"a=fingerprint", b"a=rtpmap", b"a=ice-", b"a=setup", b"a=mid"]
        )
    )
    return [line for line in lines if not line.startswith(prefix)]


def _drop_one(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    if not lines:
        return lines
    at = _pick_index(draw, lines)
    return lines[:at] + lines[at + 1 :]


def _duplicate(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    if not lines:
        return lines
    at = _pick_index(draw, lines)
    times = draw(st.sampled_from([1, 2, 10, 200, 3000]))
    return lines[: at + 1] + [lines[at]] * times + lines[at + 1 :]


def _insert(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    at = _pick_index(draw, lines)
    extra = draw(st.lists(st.sampled_from(_ATTRIBUTES), min_size=1, max_size=4))
    return lines[:at] + extra + lines[at:]


def _huge_line(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    size = draw(st.sampled_from([4_000, 4_097, 20_000, 70_000]))
    kind = draw(st.sampled_from([b"a=fmtp:111 x=", b"a=rtpmap:111 opus/48000/", b"a=junk:"]))
    return [*lines, kind + b"1" * size]


def _renumber(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    """Payload types and ports out of range: negative, past 127, past 2**64."""
    at = _pick_index(draw, lines)
    value = draw(
        st.one_of(
            st.integers(-5, 300),
            st.sampled_from([65_535, 65_536, 2**31, 2**63, 2**64, 10**30]),
        )
    )
    numbers = list(_NUMBER.finditer(lines[at])) if lines else []
    if not numbers:
        return lines
    m = numbers[draw(st.integers(0, len(numbers) - 1))]
    changed = lines[at][: m.start()] + str(value).encode() + lines[at][m.end() :]
    return [*lines[:at], changed, *lines[at + 1 :]]


def _payload_types(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    """Every rtpmap/fmtp/rtcp-fb of one payload type moved to another number."""
    new = str(draw(st.sampled_from([0, 35, 63, 96, 127, 128, 255, 1000, 2**40]))).encode()
    out = []
    for line in lines:
        m = _PAYLOAD_LINE.match(line)
        out.append(line[: m.start(2)] + new + line[m.end(2) :] if m else line)
    return out


def _candidates(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    count = draw(st.sampled_from([99, 100, 101, 1_000, 5_000]))
    made = [
        _SAMPLE_CANDIDATE % (i, i >> 16 & 255, i >> 8 & 255, i & 255, 1024 + i % 60_000)
        for i in range(count)
    ]
    return lines + made


def _junk(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    at = _pick_index(draw, lines)
    junk = draw(
        st.one_of(
            st.binary(min_size=1, max_size=64),
            st.text(max_size=32).map(lambda s: s.encode("utf-8", "surrogatepass")),
            st.sampled_from([b"\x00", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\r", b"=", b" "]),
        )
    )
    where = draw(st.sampled_from(["line", "prefix", "suffix"]))
    if not lines or where == "line":
        return [*lines[:at], junk, *lines[at:]]
    line = junk + lines[at] if where == "prefix" else lines[at] + junk
    return [*lines[:at], line, *lines[at + 1 :]]


def _random_attribute(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    at = _pick_index(draw, lines)
    key = draw(st.sampled_from([b"a=", b"m=", b"c=", b"b=", b"o=", b"t=", b"", b"x="]))
    value = draw(st.text(max_size=40)).encode("utf-8", "surrogatepass")
    return [*lines[:at], key + value, *lines[at:]]


def _mline(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    media = draw(st.sampled_from([b"audio", b"video", b"application", b"text", b"", b"AUDIO"]))
    port = draw(st.sampled_from([b"9", b"0", b"-1", b"65536", b"9/2", b"x", b""]))
    proto = draw(st.sampled_from([b"UDP/TLS/RTP/SAVPF", b"RTP/AVP", b"TCP/TLS/RTP/SAVPF", b"x"]))
    fmts = draw(
        st.lists(st.sampled_from([b"111", b"0", b"128", b"-1", b"a-b", b"\xc3"]), max_size=5)
    )
    line = b" ".join([b"m=" + media, port, proto, *fmts])
    out = [line if x.startswith(b"m=") else x for x in lines]
    return out if out != lines else [*lines, line]


def _truncate(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    return lines[: _pick_index(draw, lines) + 1]


def _shuffle(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    return draw(st.permutations(lines))


# Mutations that keep an offer's shape come twice: those offers get past the first checks
# and reach aiortc's parser, where the interesting failures are.
_SUBTLE: list[Mutation] = [
    _drop_one,
    _duplicate,
    _insert,
    _renumber,
    _payload_types,
    _junk,
    _random_attribute,
    _mline,
]
MUTATIONS: list[Mutation] = [
    *_SUBTLE,
    *_SUBTLE,
    _drop_kind,
    _huge_line,
    _candidates,
    _truncate,
    _shuffle,
]


@st.composite
def sdp_offers(draw: st.DrawFn, max_mutations: int = 3) -> bytes:
    """A real offer from the corpus with up to ``max_mutations`` mutations, or pure junk."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=512))
    seed = draw(st.sampled_from(corpus.sdp_offers()))
    lines = seed.split(b"\r\n")
    for _ in range(draw(st.integers(0, max_mutations))):
        lines = draw(st.sampled_from(MUTATIONS))(draw, lines)
    ending = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r"]))
    return ending.join(lines)


# -- playlist queries ------------------------------------------------------------------------

_NAMES = ["_HLS_msn", "_HLS_part", "_HLS_skip", "_hls_msn", "_HLS_MSN", "lang", "x", ""]


def _numberish() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**3), 10**3).map(str),
        st.integers(0, 10**40).map(str),
        st.sampled_from(["", "+1", "1.0", "1e3", "0x1", " 1", "1 ", "YES", "v2", "NO"]),
        # Unicode digits that str.isdigit() admits: superscript, Arabic-Indic, fullwidth.
        st.text(alphabet="0123456789²³¹٠١٢٣٤٥٦٧٨٩０１２３４５６７８９", min_size=1, max_size=14),
        st.text(max_size=12),
    )


@st.composite
def playlist_queries(draw: st.DrawFn) -> str:
    """A query string (without "?"): corpus lines, or parameters built from parts."""
    if draw(st.booleans()):
        return draw(st.sampled_from(corpus.queries()))
    params = draw(
        st.lists(st.tuples(st.sampled_from(_NAMES), _numberish()), min_size=0, max_size=5)
    )
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)


# -- JSON bodies ----------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@st.composite
def json_bodies(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]], prefix: str) -> bytes:
    """Bodies for one endpoint: corpus files, objects with its fields (right and wrong types),
    any JSON, non-JSON, nesting past the parser's recursion limit, huge strings."""
    kind = draw(st.integers(0, 9))
    if kind <= 1:
        return draw(st.sampled_from(corpus.json_bodies(prefix)))
    if kind <= 5:
        chosen = draw(st.fixed_dictionaries({}, optional=fields))
        wrong = draw(st.dictionaries(st.sampled_from(sorted(fields)), JSON_VALUES, max_size=2))
        extra = draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2))
        return _encode({**extra, **chosen, **wrong})
    if kind == 6:
        return _encode(draw(JSON_VALUES))
    if kind == 7:
        return draw(st.binary(max_size=200))
    if kind == 8:
        depth = draw(st.sampled_from([10, 500, 999, 1_000, 5_000]))
        wrapper = draw(st.sampled_from(["list", "open", "object"]))
        if wrapper == "list":
            return _deep(depth)
        if wrapper == "open":
            # Never closed: small enough for a 1 KiB limit, still deep enough for the stack.
            return b"[" * depth
        return b'{"a":' * depth + b"1" + b"}" * depth
    size = draw(st.sampled_from([1_000, 17_000, 300_000]))
    return _encode({name: "x" * size for name in fields})
