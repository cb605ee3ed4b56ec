"""The append-only audience event log: one JSON line per listener event, per space.

Layout: ``<data>/spaces/<id>/events.jsonl`` (format in docs/metrics.md). Requests only
append to a buffer in memory; one task writes every buffer to disk once a second on an
executor thread of its own, so no request waits on the disk. Addresses never reach the
log: only a salted hash of their /24 (IPv4) or /64 (IPv6) prefix does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from majlis.trust.audience import Event

log = logging.getLogger(__name__)

FILE_NAME = "events.jsonl"
SALT_FILE = "audience_salt"
FLUSH_INTERVAL_S = 1.0
# Past this many lines waiting for the disk, new events are dropped (and counted) rather
# than letting memory grow without bound while the disk is stuck.
MAX_PENDING_LINES = 200_000


def events_path(data: Path, space_id: str) -> Path:
    return data / "spaces" / space_id / FILE_NAME


def load_salt(data: Path) -> bytes:
    """The per-server salt for address hashes, created (mode 0600) on first start."""
    path = data / SALT_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    salt = secrets.token_hex(32).encode()
    with os.fdopen(fd, "wb") as f:
        f.write(salt)
    return salt


def address_prefix(address: str | None) -> str:
    """The /24 of an IPv4 address or the /64 of an IPv6 one (the part that is hashed)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def client_id(address: str | None, salt: bytes) -> str:
    digest = hmac.new(salt, address_prefix(address).encode(), hashlib.sha256).hexdigest()
    return digest[:16]


def encode(event: Event) -> str:
    return json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=True)


def iter_lines(path: Path) -> Iterator[tuple[str, Event | None]]:
    """Every line of a log with its parsed event, or None when the line is not valid
    (a torn last line after a crash, or an edited file)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line:
                continue
            try:
                yield line, Event.from_json(json.loads(line))
            except ValueError:
                yield line, None


def read_events(path: Path) -> tuple[list[Event], int]:
    """The valid events of a log, and how many lines were skipped as invalid."""
    events: list[Event] = []
    bad = 0
    for _, event in iter_lines(path):
        if event is None:
            bad += 1
        else:
            events.append(event)
    return events, bad


def export_events(path: Path, out: Path) -> int:
    """Copy the valid lines, byte for byte, to ``out``; returns how many were written."""
    tmp = out.with_name(out.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for line, event in iter_lines(path) if path.exists() else iter(()):
            if event is not None:
                f.write(line + "\n")
                count += 1
    shutil.move(tmp, out)
    return count


def _append(batch: dict[Path, list[str]]) -> None:
    for path, lines in batch.items():
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        except OSError as exc:
            log.warning("audience events for %s lost: %s", path.parent.name, exc)


def _fsync_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError), open(path, "rb") as f:
            os.fsync(f.fileno())


class EventWriter:
    """Buffers events per space and appends them to their logs once a second."""

    def __init__(self, flush_interval: float = FLUSH_INTERVAL_S) -> None:
        self.flush_interval = flush_interval
        self.dropped = 0
        self._pending: dict[Path, list[str]] = {}
        self._count = 0
        self._written: set[Path] = set()
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="majlis-disk-events")
        self._task: asyncio.Task[None] | None = None

    def append(self, path: Path, event: Event) -> None:
        if self._count >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        self._pending.setdefault(path, []).append(encode(event))
        self._count += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="majlis-audience-events")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending, self._count = self._pending, {}, 0
        if batch:
            self._written.update(batch)
            await asyncio.get_running_loop().run_in_executor(self._disk, _append, batch)

    async def close(self) -> None:
        """Write what is buffered, make every log durable, stop the thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._disk, _fsync_all, sorted(self._written))
        self._disk.shutdown(wait=True)
