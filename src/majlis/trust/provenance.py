"""The provenance document of a space: its segments, their hashes, the chain and a signature.

```
{"version": 1, "space_id", "title", "started_at", "ended_at",
 "init": {"uri": "init.mp4", "sha256"},
 "segments": [{"msn", "uri": "s/<msn>.m4s", "sha256", "duration", "link"}, ...],
 "chain_head", "ended", "key_id", "signature"}
```
Hashes are hex. ``signature`` is base64 Ed25519 over the canonical JSON of the document
without ``signature`` (sorted keys, separators ``,`` and ``:``, UTF-8); it is null while
the space is live.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from majlis.storage.recording import Recording
from majlis.trust.chain import Chain, Link, sha256
from majlis.trust.keys import PublicKey, SigningKey

VERSION = 1
INIT_URI = "init.mp4"
FILE_NAME = "provenance.json"


def segment_uri(msn: int) -> str:
    return f"s/{msn}.m4s"


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes the signature covers: the document without its signature, canonical JSON."""
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True, slots=True)
class SpaceFacts:
    space_id: str
    title: str
    started_at: float | None
    ended_at: float | None


def build(facts: SpaceFacts, chain: Chain, *, ended: bool, key_id: str) -> dict[str, Any]:
    return {
        "version": VERSION,
        "space_id": facts.space_id,
        "title": facts.title,
        "started_at": facts.started_at,
        "ended_at": facts.ended_at,
        "init": {"uri": INIT_URI, "sha256": chain.init_sha256.hex()},
        "segments": [
            {
                "msn": s.msn,
                "uri": segment_uri(s.msn),
                "sha256": s.sha256.hex(),
                "duration": s.duration,
                "link": s.link.hex(),
            }
            for s in chain.links
        ],
        "chain_head": chain.head.hex(),
        "ended": ended,
        "key_id": key_id,
        "signature": None,
    }


def sign(document: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    signed = {**document, "key_id": key.key_id}
    signed["signature"] = base64.b64encode(key.sign(canonical(signed))).decode("ascii")
    return signed


def signature_valid(document: dict[str, Any], key: PublicKey) -> bool:
    signature = document.get("signature")
    if not isinstance(signature, str):
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    return len(raw) == 64 and key.verifies(raw, canonical(document))


def to_json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True, slots=True)
class Parsed:
    """A document's chain, read back with every field checked for type and shape."""

    space_id: str
    init_sha256: bytes
    links: tuple[Link, ...]
    chain_head: bytes
    ended: bool
    key_id: str
    signature: str | None


def _hex(value: object, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError(f"{what} is not a 64-character hex SHA-256")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} is not a 64-character hex SHA-256") from None


def _segment(raw: object, i: int) -> Link:
    if not isinstance(raw, dict):
        raise ValueError(f"segments[{i}] is not an object")
    msn, duration = raw.get("msn"), raw.get("duration")
    if not isinstance(msn, int) or isinstance(msn, bool) or msn < 0:
        raise ValueError(f"segments[{i}].msn is not a segment number")
    if not isinstance(duration, int | float) or isinstance(duration, bool) or duration < 0:
        raise ValueError(f"segments[{i}].duration is not a duration")
    if raw.get("uri") != segment_uri(msn):
        raise ValueError(f"segments[{i}].uri is not {segment_uri(msn)}")
    sha = _hex(raw.get("sha256"), f"segments[{i}].sha256")
    return Link(msn, sha, float(duration), _hex(raw.get("link"), f"segments[{i}].link"))


def parse(document: object) -> Parsed:
    """Check a document's shape; raises ValueError naming the first field that is wrong."""
    if not isinstance(document, dict):
        raise ValueError("the provenance document is not a JSON object")
    if document.get("version") != VERSION:
        raise ValueError(f"unknown provenance version {document.get('version')!r}")
    space_id, key, ended = document.get("space_id"), document.get("key_id"), document.get("ended")
    if not isinstance(space_id, str) or not isinstance(key, str) or not isinstance(ended, bool):
        raise ValueError("space_id, key_id or ended is missing or of the wrong type")
    init = document.get("init")
    if not isinstance(init, dict) or init.get("uri") != INIT_URI:
        raise ValueError("init is not {'uri': 'init.mp4', 'sha256': ...}")
    segments = document.get("segments")
    if not isinstance(segments, list):
        raise ValueError("segments is not a list")
    signature = document.get("signature")
    if signature is not None and not isinstance(signature, str):
        raise ValueError("signature is neither null nor a string")
    return Parsed(
        space_id=space_id,
        init_sha256=_hex(init.get("sha256"), "init.sha256"),
        links=tuple(_segment(raw, i) for i, raw in enumerate(segments)),
        chain_head=_hex(document.get("chain_head"), "chain_head"),
        ended=ended,
        key_id=key,
        signature=signature,
    )


class ProvenanceLog:
    """A space's chain while it records; the signed document once it has ended."""

    def __init__(self, space_id: str) -> None:
        self.space_id = space_id
        self.chain: Chain | None = None
        self.sealed: bytes | None = None  # provenance.json as published, once signed
        self._sealing = False
        self._sealed_document: dict[str, Any] | None = None
        self._live: tuple[object, bytes] | None = None

    def claim_seal(self) -> bool:
        """True for the one caller that signs the ended recording (ends can race)."""
        if self._sealing or self.chain is None:
            return False
        self._sealing = True
        return True

    def start(self, init: bytes) -> None:
        # After a restart the chain goes on from the recording: a new init only starts a
        # chain that has no segment yet.
        if self.chain is None or not self.chain.links:
            self.chain = Chain(self.space_id, sha256(init))

    def live_json(self, facts: SpaceFacts, key_id: str) -> bytes | None:
        """The unsigned document while live, rebuilt only when a segment was added."""
        if self.chain is None:
            return None
        stamp = (len(self.chain.links), id(self.chain), facts)
        if self._live is None or self._live[0] != stamp:
            document = build(facts, self.chain, ended=False, key_id=key_id)
            self._live = (stamp, to_json(document))
        return self._live[1]

    def sealed_document(self) -> dict[str, Any] | None:
        """The signed document as an object (parsed once: clips read it on every request)."""
        if self.sealed is None:
            return None
        if self._sealed_document is None:
            self._sealed_document = json.loads(self.sealed)
        return self._sealed_document

    def add(self, msn: int, segment_sha256: bytes, duration: float) -> None:
        if self.chain is None:
            raise ValueError("a segment was recorded before the init segment")
        self.chain.append(msn, segment_sha256, duration)


def chain_from_recording(space_id: str, recording: Recording) -> Chain | None:
    """Rebuild the chain by hashing the recording again (blocking: run in an executor)."""
    if not recording.has_init():
        return None
    chain = Chain(space_id, sha256(recording.read_init()))
    for entry in recording.load_entries():
        data = recording.segment_path(entry.msn).read_bytes()
        chain.append(entry.msn, sha256(data), entry.duration)
    return chain


def seal(facts: SpaceFacts, chain: Chain, key: SigningKey) -> bytes:
    """The signed document of an ended space, as published (blocking for long recordings)."""
    return to_json(sign(build(facts, chain, ended=True, key_id=key.key_id), key))
