"""Export an ended space's replay as one M4A, remuxed without re-encoding and signed with C2PA.

The recording's AAC frames are copied from ``init.mp4`` + ``s/<msn>.m4s`` into a plain
(non-fragmented) M4A: players that do not read fragmented MP4 play it, and the decoded audio is
the replay's, sample for sample. C2PA then binds a manifest to the file's bytes (a BMFF hash):
it names Majlis as the claim generator and records the space and, when the server signed the
replay, its ``provenance.json`` chain head, key id and signature. Blocking: a server would run
:func:`export_space` in an executor.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import av

from majlis import __version__
from majlis.storage.recording import Recording

MIME = "audio/mp4"
ASSERTION_LABEL = "org.majlis.provenance"
# IPTC: a digital composite of several captures: the live mix of the speakers' microphones.
SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeCapture"
PROVENANCE_FIELDS = ("chain_head", "key_id", "signature")

Progress = Callable[[int, int], None]


class ExportError(ValueError):
    """An export refused or failed; the message says why (the command exits with 2)."""


@dataclass(frozen=True, slots=True)
class SpaceInfo:
    id: str
    title: str
    status: str
    started_at: float | None
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class Credentials:
    """A C2PA signing certificate chain (PEM, leaf first) and its private key (PEM)."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def load(cls, cert: Path, key: Path) -> Credentials:
        try:
            return cls(cert.read_bytes(), key.read_bytes())
        except OSError as exc:
            raise ExportError(f"cannot read {exc.filename}: {exc.strerror}") from None


@dataclass(frozen=True, slots=True)
class Remuxed:
    packets: int
    samples: int  # coded samples, the encoder's priming included
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples / self.sample_rate


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    space: SpaceInfo
    segments: int
    remuxed: Remuxed
    signed: bool
    manifest: dict[str, Any]


def _valid_space_id(space_id: str) -> bool:
    # The registry's rule (trust may not import rooms): it also keeps paths inside the folder.
    return 0 < len(space_id) <= 32 and all(c.isalnum() or c in "-_" for c in space_id)


def read_space(data: Path, space_id: str) -> SpaceInfo:
    """The space's row from the data folder's database, read-only (the server may be running)."""
    if not _valid_space_id(space_id):
        raise ExportError(f"{space_id!r} is not a space id")
    db = data / "majlis.sqlite3"
    if not db.is_file():
        raise ExportError(f"no Majlis database in {data} (is --data the server's data folder?)")
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as c:
            row = c.execute(
                "SELECT id, title, status, started_at, ended_at FROM spaces WHERE id = ?",
                (space_id,),
            ).fetchone()
    except sqlite3.Error as exc:
        raise ExportError(f"cannot read {db}: {exc}") from None
    if row is None:
        raise ExportError(f"no space {space_id} in {data}")
    space = SpaceInfo(*row)
    if space.status != "ended":
        raise ExportError(
            f"space {space_id} is {space.status}: only an ended space can be exported"
        )
    return space


@dataclass(frozen=True, slots=True)
class Provenance:
    """The replay's ``provenance.json``: what the manifest records, and the hashes it lists."""

    record: dict[str, Any]
    init_sha256: str | None
    segments: dict[int, str] | None  # msn → hex SHA-256


def read_provenance(folder: Path) -> Provenance | None:
    path = folder / "provenance.json"
    if not path.is_file():
        return None
    raw = path.read_bytes()
    try:
        document = json.loads(raw)
    except ValueError:
        raise ExportError(f"{path} is not valid JSON; refusing to vouch for it") from None
    if not isinstance(document, dict):
        raise ExportError(f"{path} is not a JSON object; refusing to vouch for it")
    # The file's own hash lets anyone match the export to the exact document published.
    record = {
        "document": path.name,
        "sha256": hashlib.sha256(raw).hexdigest(),
        **{k: document.get(k) for k in PROVENANCE_FIELDS},
    }
    init = document.get("init")
    init_sha = init.get("sha256") if isinstance(init, dict) else None
    listed = document.get("segments")
    segments = None
    if isinstance(listed, list):
        segments = {
            s["msn"]: s["sha256"]
            for s in listed
            if isinstance(s, dict) and isinstance(s.get("msn"), int) and "sha256" in s
        }
    return Provenance(record, init_sha if isinstance(init_sha, str) else None, segments)


def check_complete(recording: Recording, msns: list[int], provenance: Provenance | None) -> None:
    """Refuse a recording with a segment missing, or one that differs from its provenance."""
    for expected, msn in enumerate(msns):
        if msn != expected:
            raise ExportError(f"segment {expected} is missing from {recording.segment_dir}")
    if provenance is None:
        return
    init = provenance.init_sha256
    if init is not None and _sha256(recording.init_path) != init:
        raise ExportError("init.mp4 differs from the hash in provenance.json")
    if provenance.segments is None:
        return
    if sorted(provenance.segments) != msns:
        raise ExportError(
            f"provenance.json lists {len(provenance.segments)} segments, the recording has "
            f"{len(msns)}: run `majlis verify` on the replay"
        )
    for msn in msns:
        if _sha256(recording.segment_path(msn)) != provenance.segments[msn]:
            raise ExportError(f"segment {msn} differs from its hash in provenance.json")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class _Concatenated(io.RawIOBase):
    """The init segment and the media segments as one stream, counting the bytes read."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._pending = list(paths)
        self._file: io.BufferedReader | None = None
        self.done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._file is None:
                if not self._pending:
                    return 0
                self._file = open(self._pending.pop(0), "rb")  # noqa: SIM115 (closed below)
            n = self._file.readinto(buffer)
            if n:
                self.done += n
                return n
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        super().close()


def remux(recording: Recording, msns: list[int], out: Path, progress: Progress) -> Remuxed:
    """Copy every AAC frame of the recording into a plain M4A at ``out``, in order."""
    try:
        return _remux(recording, msns, out, progress)
    except (av.error.FFmpegError, IndexError) as exc:
        raise ExportError(f"cannot read the recording in {recording.folder}: {exc}") from None


def _remux(recording: Recording, msns: list[int], out: Path, progress: Progress) -> Remuxed:
    paths = [recording.init_path, *(recording.segment_path(m) for m in msns)]
    total = sum(p.stat().st_size for p in paths)
    source = _Concatenated(paths)
    packets = samples = 0
    with source, av.open(source, "r") as src, av.open(str(out), "w", format="ipod") as dst:
        in_stream = src.streams.audio[0]
        out_stream = dst.add_stream_from_template(in_stream)
        # Timestamps are renumbered so the file is continuous: after a server restart the
        # recording carries on with decode times counted from zero again.
        pts: int | None = None
        for packet in src.demux(in_stream):
            if packet.size == 0 or packet.duration is None:
                continue  # the demuxer's end-of-stream flush packet
            if pts is None:
                pts = packet.pts if packet.pts is not None else 0  # < 0: the priming frame
            packet.pts = packet.dts = pts
            pts += packet.duration
            packet.stream = out_stream
            dst.mux(packet)
            packets += 1
            samples += packet.duration
            progress(source.done, total)
        rate = in_stream.sample_rate
    progress(total, total)
    return Remuxed(packets, samples, rate)


def _when(at: float | None) -> str | None:
    if at is None:
        return None
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat().replace("+00:00", "Z")


def build_manifest(
    space: SpaceInfo,
    msns: list[int],
    discontinuities: int,
    remuxed: Remuxed,
    provenance: Provenance | None,
) -> dict[str, Any]:
    """The C2PA manifest definition: who made the file, from what, and the replay's evidence."""
    agent = {"name": "Majlis", "version": __version__}
    created: dict[str, Any] = {
        "action": "c2pa.created",
        "softwareAgent": agent,
        "digitalSourceType": SOURCE_TYPE,
    }
    published: dict[str, Any] = {"action": "c2pa.published", "softwareAgent": agent}
    started, ended = _when(space.started_at), _when(space.ended_at)
    if started is not None:
        created["when"] = started
    if ended is not None:
        published["when"] = ended
    record = {
        "space_id": space.id,
        "title": space.title,
        # ISO 8601 strings, not epoch floats: C2PA readers print numbers with fewer digits.
        "started_at": started,
        "ended_at": ended,
        "segments": len(msns),
        "first_segment": msns[0],
        "last_segment": msns[-1],
        "discontinuities": discontinuities,
        "duration": round(remuxed.duration, 6),
        "audio_frames": remuxed.packets,
        "sample_rate": remuxed.sample_rate,
        "replay_provenance": provenance.record if provenance is not None else None,
    }
    return {
        "claim_generator_info": [agent],
        "title": space.title,
        "format": MIME,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [created, published]}},
            {"label": ASSERTION_LABEL, "data": record},
        ],
    }


def signing_algorithm(key_pem: bytes) -> str:
    """The C2PA algorithm name for a private key: ES256/384/512 by curve, PS256, Ed25519."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ExportError(f"the private key is not an unencrypted PEM key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in by_curve:
            return by_curve[key.curve.name]
        raise ExportError(f"C2PA cannot sign with curve {key.curve.name}")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ExportError(f"C2PA cannot sign with a {type(key).__name__}")


def sign(source: Path, dest: Path, manifest: dict[str, Any], credentials: Credentials) -> None:
    """Write ``source`` to ``dest`` with the manifest embedded and signed."""
    import c2pa

    algorithm = signing_algorithm(credentials.key_pem)
    try:
        info = c2pa.C2paSignerInfo(algorithm, credentials.cert_pem, credentials.key_pem, None)
        with (
            c2pa.Signer.from_info(info) as signer,
            c2pa.Builder(manifest) as builder,
            open(source, "rb") as src,
            open(dest, "w+b") as dst,
        ):
            builder.sign(signer, MIME, src, dst)
    except c2pa.C2paError as exc:
        raise ExportError(f"C2PA signing failed: {exc}") from None


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def export_space(
    data: Path,
    space_id: str,
    out: Path,
    credentials: Credentials | None,
    progress: Progress = lambda done, total: None,
) -> ExportResult:
    """Write the ended space's whole replay to ``out``; sign it unless ``credentials`` is None."""
    space = read_space(data, space_id)
    folder = data / "spaces" / space_id
    recording = Recording(folder)
    entries = recording.load_entries()
    if not recording.has_init() or not entries:
        raise ExportError(f"space {space_id} has no recorded audio")
    if not out.parent.is_dir():
        raise ExportError(f"no folder {out.parent} to write {out.name} into")
    provenance = read_provenance(folder)
    msns = [e.msn for e in entries]
    check_complete(recording, msns, provenance)
    discontinuities = sum(e.discontinuity for e in entries)
    with (
        _temporary(out.with_name(f".{out.name}.remux")) as plain,
        _temporary(out.with_name(f".{out.name}.signed")) as signed,
    ):
        remuxed = remux(recording, msns, plain, progress)
        _check_duration(remuxed, sum(e.duration for e in entries), len(entries))
        manifest = build_manifest(space, msns, discontinuities, remuxed, provenance)
        if credentials is not None:
            sign(plain, signed, manifest, credentials)
            os.replace(signed, out)
        else:
            os.replace(plain, out)
    return ExportResult(out, space, len(entries), remuxed, credentials is not None, manifest)


def _check_duration(remuxed: Remuxed, recorded: float, segments: int) -> None:
    # The index's durations count whole AAC frames: the copy must hold exactly as many.
    if abs(remuxed.duration - recorded) * remuxed.sample_rate > segments:
        raise ExportError(
            f"the remux holds {remuxed.duration:.3f} s of audio but the recording's index "
            f"says {recorded:.3f} s: a segment file is damaged"
        )


class ProgressBar:
    """A one-line text progress bar, redrawn only when the percentage changes."""

    def __init__(self, stream: TextIO, label: str, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self._percent = -1

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // total if total > 0 else 100
        if percent == self._percent:
            return
        self._percent = percent
        filled = self.width * percent // 100
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {percent:3d}%")
        self.stream.flush()

    def finish(self) -> None:
        if self._percent >= 0:
            self.stream.write("\n")
            self.stream.flush()
