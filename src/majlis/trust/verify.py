"""`majlis verify`: prove a replay (by URL or folder) is the one the server signed, unedited.

Fetching (`load_url`, `load_folder`) gathers the replay as published; `check` is pure and
lists every difference from the signed provenance document. Exit codes: 0 intact,
1 tampered, 2 unusable input (bad URL, network error, not a Majlis replay).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import aiohttp

from majlis.trust import provenance
from majlis.trust.chain import first_broken_link, genesis, sha256
from majlis.trust.keys import KEY_FILE, PublicKey, SigningKey

INTACT, TAMPERED, UNUSABLE = 0, 1, 2
MAX_PLAYLIST_BYTES = 8 * 1024 * 1024
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_MEDIA_BYTES = 32 * 1024 * 1024
FETCH_CONCURRENCY = 8
TIMEOUT_S = 30.0
_SEGMENT = re.compile(r"s/(\d{1,9})\.m4s")
_PAGE = re.compile(r"^/s/([A-Za-z0-9_-]{1,32})/?$")


class Unusable(Exception):
    """The input cannot be checked at all (as opposed to: checked and found tampered)."""


@dataclass
class Replay:
    """A replay as published: the playlist's list, the bytes behind it, the document."""

    listed: list[str]  # segment URIs in playlist order
    ended: bool  # the playlist carries EXT-X-ENDLIST (or is a recording's index)
    init: bytes | None
    document: object
    key: PublicKey
    segments: dict[str, bytes] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)  # uri -> why it has no bytes
    # A clip: the segment range it claims (first, last) and the hashes its clip.json states.
    excerpt: tuple[int, int] | None = None
    claims: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    problems: tuple[str, ...]
    summary: str

    @property
    def intact(self) -> bool:
        return not self.problems

    def render(self) -> str:
        if self.intact:
            return f"INTACT: {self.summary}"
        return "TAMPERED:\n" + "\n".join(f"  - {p}" for p in self.problems)


# -- the checks (pure) -------------------------------------------------------------------


def _short(digest: bytes) -> str:
    return digest.hex()[:16] + "…"


def check(replay: Replay) -> Verdict:
    try:
        doc = provenance.parse(replay.document)
    except ValueError as exc:
        raise Unusable(f"provenance.json is not a Majlis provenance document: {exc}") from None
    problems = _signature_problems(replay, doc)
    problems += _chain_problems(doc)
    if not replay.ended:
        problems.append("playlist has no EXT-X-ENDLIST: not a finished replay")
    if replay.init is None:
        problems.append("init segment (init.mp4): missing")
    elif sha256(replay.init) != doc.init_sha256:
        actual = sha256(replay.init)
        problems.append(
            f"init segment (init.mp4): content changed (sha256 {_short(actual)} != "
            f"{_short(doc.init_sha256)})"
        )
    expected = [s.msn for s in doc.links]
    if replay.excerpt is not None:
        problems += _excerpt_problems(replay, doc)
        first, last = replay.excerpt
        expected = [m for m in expected if first <= m <= last]
    problems += _listing_problems(replay.listed, expected)
    problems += _content_problems(replay, doc)
    return Verdict(tuple(problems), _summary(replay, doc, expected))


def _summary(replay: Replay, doc: provenance.Parsed, expected: Sequence[int]) -> str:
    signed_by = f"signed by key {doc.key_id}"
    seconds = sum(s.duration for s in doc.links)
    whole = f"{len(doc.links)} segments, {seconds:.1f} s"
    if replay.excerpt is None:
        return f"{whole}, {signed_by}"
    chosen = set(expected)
    clip_seconds = sum(s.duration for s in doc.links if s.msn in chosen)
    first, last = replay.excerpt
    return (
        f"clip of segments {first}–{last} ({len(chosen)} segments, {clip_seconds:.1f} s) is an "
        f"exact excerpt of the replay of space {doc.space_id} ({whole}), {signed_by}"
    )


def _excerpt_problems(replay: Replay, doc: provenance.Parsed) -> list[str]:
    assert replay.excerpt is not None
    first, last = replay.excerpt
    by_msn = {s.msn: s for s in doc.links}
    if first not in by_msn or last not in by_msn or first > last:
        return [f"clip claims segments {first}–{last}, which the signed replay does not have"]
    return [
        f"clip.json: segment {msn}'s sha256 is not the signed one"
        for msn, claimed in sorted(replay.claims.items())
        if msn not in by_msn or by_msn[msn].sha256.hex() != claimed
    ]


def _signature_problems(replay: Replay, doc: provenance.Parsed) -> list[str]:
    if not doc.ended or doc.signature is None:
        return ["provenance is not signed: the space has not ended"]
    if doc.key_id != replay.key.key_id:
        return [f"signed by key {doc.key_id}, expected {replay.key.key_id}"]
    assert isinstance(replay.document, dict)
    if not provenance.signature_valid(replay.document, replay.key):
        return [f"signature invalid (does not verify with key {replay.key.key_id})"]
    return []


def _chain_problems(doc: provenance.Parsed) -> list[str]:
    broken = first_broken_link(doc.space_id, doc.init_sha256, doc.links)
    if broken is not None:
        return [f"chain broken at segment {doc.links[broken].msn}: its link does not follow"]
    head = doc.links[-1].link if doc.links else genesis(doc.space_id, doc.init_sha256)
    if head != doc.chain_head:
        return [f"chain head {_short(doc.chain_head)} does not match the chain ({_short(head)})"]
    return []


def _msn(uri: str) -> int | None:
    m = _SEGMENT.fullmatch(uri)
    return int(m.group(1)) if m else None


def _listing_problems(listed: Sequence[str], signed: Sequence[int]) -> list[str]:
    problems: list[str] = []
    signed_set = set(signed)
    seen: set[int] = set()
    order: list[int] = []
    for uri in listed:
        msn = _msn(uri)
        if msn is None or msn not in signed_set:
            problems.append(f"playlist lists {uri}, which is not a segment of the signed replay")
        elif msn in seen:
            problems.append(f"segment {msn} ({uri}) listed twice in the playlist")
        else:
            seen.add(msn)
            order.append(msn)
    missing = [m for m in signed if m not in seen]
    if missing:
        last_listed = max((signed.index(m) for m in seen), default=-1)
        if all(signed.index(m) > last_listed for m in missing):
            ends = f"ends at segment {signed[last_listed]}" if seen else "lists no segment"
            problems.append(
                f"playlist truncated: {ends} of {signed[0]}–{signed[-1]} "
                f"({len(seen)} of {len(signed)} segments listed)"
            )
        else:
            problems += [f"segment {m} missing from playlist" for m in missing]
    expected = [m for m in signed if m in seen]
    problems += _order_problems(order, expected)
    return problems


def _order_problems(order: list[int], expected: list[int]) -> list[str]:
    wrong = [i for i, (a, b) in enumerate(zip(order, expected, strict=True)) if a != b]
    if not wrong:
        return []
    if len(wrong) == 2 and order[wrong[0]] == expected[wrong[1]]:
        a, b = sorted((expected[wrong[0]], expected[wrong[1]]))
        return [f"segments {a} and {b} out of order"]
    shown = ", ".join(str(order[i]) for i in wrong[:6])
    return [f"segments out of order: the playlist has {shown} where the signed replay does not"]


def _content_problems(replay: Replay, doc: provenance.Parsed) -> list[str]:
    by_msn = {s.msn: s for s in doc.links}
    owner = {s.sha256: s.msn for s in doc.links}
    held: dict[int, int] = {}  # segment -> the signed segment whose bytes it holds instead
    problems: list[str] = []
    for uri in replay.listed:
        msn = _msn(uri)
        if msn is None or msn not in by_msn:
            continue
        if uri in replay.unavailable:
            problems.append(f"segment {msn} ({uri}): {replay.unavailable[uri]}")
            continue
        actual = sha256(replay.segments[uri])
        signed = by_msn[msn].sha256
        if actual == signed:
            continue
        if actual in owner:
            held[msn] = owner[actual]
        else:
            problems.append(
                f"segment {msn} ({uri}): content changed "
                f"(sha256 {_short(actual)} != {_short(signed)})"
            )
    for msn, other in sorted(held.items()):
        if held.get(other) == msn and other < msn:
            continue  # reported with its pair
        if held.get(other) == msn:
            problems.append(
                f"segments {msn} and {other} out of order "
                f"(s/{msn}.m4s holds segment {other}, s/{other}.m4s holds segment {msn})"
            )
        else:
            problems.append(f"segment {msn} (s/{msn}.m4s): holds the content of segment {other}")
    return problems


# -- keys --------------------------------------------------------------------------------


def parse_key(text: str) -> PublicKey:
    """A key given as base64 (raw 32 bytes), the well-known JSON, or a private key PEM."""
    text = text.strip()
    if text.startswith("{"):
        try:
            described = json.loads(text)
            return PublicKey.from_base64(str(described["public_key"]))
        except (ValueError, KeyError, TypeError):
            raise ValueError("the key JSON has no usable 'public_key'") from None
    if text.startswith("-----BEGIN"):
        return SigningKey.from_pem(text.encode()).public
    return PublicKey.from_base64(text)


def key_argument(value: str) -> PublicKey:
    path = Path(value)
    try:
        if path.is_file():
            if path.stat().st_size > 64 * 1024:
                raise Unusable(f"{value} is too large to be a key")
            return parse_key(path.read_text(encoding="utf-8"))
        return parse_key(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Unusable(f"--key: {exc}") from None


# -- a folder ----------------------------------------------------------------------------


def _read(path: Path, limit: int) -> bytes | None:
    if not path.is_file():
        return None
    if path.stat().st_size > limit:
        raise Unusable(f"{path} is larger than {limit} bytes: not part of a Majlis replay")
    return path.read_bytes()


def _listed_in_index(text: str) -> list[str]:
    # segments.jsonl is the server's own list of announced segments: the folder's playlist.
    listed: list[str] = []
    for line in text.splitlines():
        try:
            listed.append(provenance.segment_uri(int(json.loads(line)["msn"])))
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash announced nothing
    return listed


def load_folder(folder: Path, key: PublicKey | None) -> Replay:
    if not folder.is_dir():
        raise Unusable(f"{folder}: no such folder")
    raw_doc = _read(folder / provenance.FILE_NAME, MAX_DOCUMENT_BYTES)
    if raw_doc is None:
        raise Unusable(f"{folder} has no {provenance.FILE_NAME}: not an ended Majlis space")
    document = _json(raw_doc, "provenance.json")
    playlist = _read(folder / "audio.m3u8", MAX_PLAYLIST_BYTES)
    if playlist is not None:
        listed, ended, _ = parse_media_playlist(playlist.decode("utf-8", "replace"))
    else:
        index = _read(folder / "segments.jsonl", MAX_PLAYLIST_BYTES)
        if index is None:
            raise Unusable(f"{folder} has neither audio.m3u8 nor segments.jsonl")
        listed, ended = _listed_in_index(index.decode("utf-8", "replace")), True
    replay = Replay(
        listed=listed,
        ended=ended,
        init=_read(folder / "init.mp4", MAX_MEDIA_BYTES),
        document=document,
        key=key or _server_key(folder),
    )
    for uri in listed:
        data = _read(folder / uri, MAX_MEDIA_BYTES) if _msn(uri) is not None else None
        if data is None:
            replay.unavailable[uri] = "file missing"
        else:
            replay.segments[uri] = data
    return replay


def _server_key(folder: Path) -> PublicKey:
    # <data>/spaces/<id>/: the server that recorded it keeps its key two levels up.
    path = folder.resolve().parent.parent / KEY_FILE
    if not path.is_file():
        raise Unusable(
            "no key to check the signature with: give --key (the server's public key, "
            "from /.well-known/majlis-signing-key)"
        )
    return SigningKey.from_pem(path.read_bytes()).public


def _json(data: bytes, what: str) -> object:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Unusable(f"{what} is not JSON: not a Majlis provenance document") from None


# -- a URL -------------------------------------------------------------------------------


def parse_media_playlist(text: str) -> tuple[list[str], bool, str | None]:
    """(segment URIs in order, has ENDLIST, EXT-X-MAP URI) of an HLS media playlist."""
    if not text.startswith("#EXTM3U"):
        raise Unusable("not an HLS playlist (no #EXTM3U)")
    listed: list[str] = []
    ended, init_uri = False, None
    for line in (raw.strip() for raw in text.splitlines()):
        if line == "#EXT-X-ENDLIST":
            ended = True
        elif line.startswith("#EXT-X-MAP:"):
            m = re.search(r'URI="([^"]*)"', line)
            init_uri = m.group(1) if m else None
        elif line and not line.startswith("#"):
            listed.append(line)
    return listed, ended, init_uri


class _Fetcher:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def get(self, url: str, limit: int, *, missing_ok: bool = False) -> bytes | None:
        async with self.limit, self.session.get(url, allow_redirects=True) as resp:
            if resp.status == 404 and missing_ok:
                return None
            if resp.status != 200:
                raise Unusable(f"{url}: HTTP {resp.status}")
            if (resp.content_length or 0) > limit:
                raise Unusable(f"{url} is larger than {limit} bytes: not part of a Majlis replay")
            # read(n) returns what has arrived, up to n bytes: loop to EOF or past the limit.
            body = bytearray()
            while len(body) <= limit:
                chunk = await resp.content.read(limit + 1 - len(body))
                if not chunk:
                    break
                body += chunk
            if len(body) > limit:
                raise Unusable(f"{url} is larger than {limit} bytes: not part of a Majlis replay")
            return bytes(body)


async def _playlist(fetch: _Fetcher, url: str) -> tuple[str, str]:
    """(media playlist URL, its text), following a multivariant playlist or a page URL."""
    parts = urlsplit(url)
    if m := _PAGE.match(parts.path):
        url = f"{parts.scheme}://{parts.netloc}/live/{m.group(1)}/audio.m3u8"
    for _ in range(2):
        body = await fetch.get(url, MAX_PLAYLIST_BYTES)
        assert body is not None
        text = body.decode("utf-8", "replace")
        if not text.startswith("#EXTM3U"):
            raise Unusable(f"{url} is not an HLS playlist or a Majlis space page")
        if "#EXT-X-STREAM-INF" not in text:
            return url, text
        lines = [ln.strip() for ln in text.splitlines()]
        start = next(i for i, ln in enumerate(lines) if ln.startswith("#EXT-X-STREAM-INF"))
        after = lines[start:]
        variant = next((ln for ln in after if ln and not ln.startswith("#")), None)
        if variant is None:
            raise Unusable(f"{url}: multivariant playlist without a variant")
        url = urljoin(url, variant)
    raise Unusable(f"{url}: a multivariant playlist points to another multivariant playlist")


_CLIP = re.compile(r"^/clips/([A-Za-z0-9_.-]{1,64})(?:/|/audio\.m3u8|/clip\.json)?$")


async def _fetch_url(url: str, key: PublicKey | None) -> Replay:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT_S, sock_read=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        fetch = _Fetcher(session)
        parts = urlsplit(url)
        if m := _CLIP.match(parts.path):
            return await _fetch_clip(fetch, f"{parts.scheme}://{parts.netloc}/clips/{m[1]}/", key)
        playlist_url, text = await _playlist(fetch, url)
        listed, ended, init_uri = parse_media_playlist(text)
        urls = {uri: urljoin(playlist_url, uri) for uri in listed}
        return await _assemble(
            fetch,
            provenance_url=urljoin(playlist_url, provenance.FILE_NAME),
            init_url=urljoin(playlist_url, init_uri or provenance.INIT_URI),
            listed=listed,
            urls=urls,
            ended=ended,
            key=key,
        )


async def _assemble(
    fetch: _Fetcher,
    *,
    provenance_url: str,
    init_url: str,
    listed: list[str],
    urls: dict[str, str],
    ended: bool,
    key: PublicKey | None,
) -> Replay:
    raw_doc = await fetch.get(provenance_url, MAX_DOCUMENT_BYTES, missing_ok=True)
    if raw_doc is None:
        raise Unusable(f"no provenance document at {provenance_url}: not a Majlis replay")
    replay = Replay(
        listed=listed,
        ended=ended,
        init=await fetch.get(init_url, MAX_MEDIA_BYTES, missing_ok=True),
        document=_json(raw_doc, "provenance.json"),
        key=key or await _well_known_key(fetch, provenance_url),
    )
    unique = list(dict.fromkeys(listed))
    bodies = await asyncio.gather(
        *(fetch.get(urls[uri], MAX_MEDIA_BYTES, missing_ok=True) for uri in unique)
    )
    for uri, body in zip(unique, bodies, strict=True):
        if body is None:
            replay.unavailable[uri] = "not served (HTTP 404)"
        else:
            replay.segments[uri] = body
    return replay


def _clip_claims(raw: object) -> tuple[str, tuple[int, int], dict[int, str]]:
    """(source provenance URL, segment range, stated hashes) of a clip.json."""
    wrong = Unusable("clip.json is not a Majlis clip document")
    if not isinstance(raw, dict):
        raise wrong
    try:
        source = raw["source"]["provenance"]
        first, last = raw["first_msn"], raw["last_msn"]
        claims = {int(s["msn"]): str(s["sha256"]) for s in raw["segments"]}
    except (KeyError, TypeError, ValueError):
        raise wrong from None
    if not (isinstance(source, str) and isinstance(first, int) and isinstance(last, int)):
        raise wrong
    return source, (first, last), claims


async def _fetch_clip(fetch: _Fetcher, base: str, key: PublicKey | None) -> Replay:
    clip_url = urljoin(base, "clip.json")
    body = await fetch.get(clip_url, MAX_DOCUMENT_BYTES)
    assert body is not None
    source, excerpt, claims = _clip_claims(_json(body, "clip.json"))
    provenance_url = urljoin(clip_url, source)
    playlist_url = urljoin(base, "audio.m3u8")
    text = await fetch.get(playlist_url, MAX_PLAYLIST_BYTES)
    assert text is not None
    listed_raw, ended, init_uri = parse_media_playlist(text.decode("utf-8", "replace"))
    # The clip lists the source's own segment URLs: name them as the source document does.
    segment_base = urljoin(provenance_url, "s/")
    listed: list[str] = []
    urls: dict[str, str] = {}
    for uri in listed_raw:
        absolute = urljoin(playlist_url, uri)
        name = "s/" + absolute[len(segment_base) :] if absolute.startswith(segment_base) else uri
        listed.append(name)
        urls[name] = absolute
    replay = await _assemble(
        fetch,
        provenance_url=provenance_url,
        init_url=urljoin(playlist_url, init_uri or urljoin(provenance_url, provenance.INIT_URI)),
        listed=listed,
        urls=urls,
        ended=ended,
        key=key,
    )
    replay.excerpt, replay.claims = excerpt, claims
    return replay


async def _well_known_key(fetch: _Fetcher, playlist_url: str) -> PublicKey:
    url = urljoin(playlist_url, "/.well-known/majlis-signing-key")
    body = await fetch.get(url, 64 * 1024)
    assert body is not None
    try:
        key = parse_key(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise Unusable(f"{url} does not hold a Majlis signing key") from None
    return key


def load_url(url: str, key: PublicKey | None) -> Replay:
    try:
        return asyncio.run(_fetch_url(url, key))
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise Unusable(f"cannot fetch {url}: {exc or type(exc).__name__}") from None


def verify(target: str, key: str | None) -> tuple[int, str]:
    """(exit code, message) for `majlis verify TARGET [--key KEY]`."""
    try:
        public = key_argument(key) if key else None
        if target.startswith(("http://", "https://")):
            replay = load_url(target, public)
        else:
            replay = load_folder(Path(target), public)
        verdict = check(replay)
    except Unusable as exc:
        return UNUSABLE, f"cannot verify: {exc}"
    return (INTACT if verdict.intact else TAMPERED), verdict.render()
