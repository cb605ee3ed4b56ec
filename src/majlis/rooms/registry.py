"""All spaces of this node: creation, lookup, restore after a restart, shutdown."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from majlis.clock import Clock
from majlis.config import Settings
from majlis.errors import NotFound
from majlis.packaging.playlist import SegmentEntry
from majlis.rooms.pipeline import RecordingSink
from majlis.rooms.space import Space, Status, load_stage
from majlis.rooms.tokens import Role, TokenSigner
from majlis.storage.database import Database, SpaceRow, StageRows
from majlis.storage.recording import Recording, write_durably
from majlis.trust import provenance
from majlis.trust.keys import SigningKey

log = logging.getLogger(__name__)

TOKEN_LIFETIME_S = 7 * 24 * 3600
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000
# BCP 47 language tags as people write them (en, ar, ar-EG, zh-Hant-TW); not a full parser.
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")
# A scheduled start may lie this far ahead at most (and not more than a day behind).
MAX_SCHEDULE_AHEAD_S = 366 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Schedule:
    """What a space announces before it starts: all optional."""

    description: str = ""
    language: str | None = None
    starts_at: float | None = None


def parse_schedule(body: dict[str, object], now: float) -> Schedule:
    """Validate `description`, `language` and `starts_at` (ISO 8601 with a time zone)."""
    description = body.get("description", "")
    if not isinstance(description, str):
        raise ValueError("'description' must be a string")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise ValueError(f"description is longer than {MAX_DESCRIPTION_CHARS} characters")
    language = body.get("language")
    if language is not None and (
        not isinstance(language, str) or not LANGUAGE_TAG.fullmatch(language)
    ):
        raise ValueError("'language' must be a language tag such as en, ar or ar-EG")
    starts_at = body.get("starts_at")
    if starts_at is not None:
        starts_at = _instant(starts_at)
        if not now - 86_400 <= starts_at <= now + MAX_SCHEDULE_AHEAD_S:
            raise ValueError("'starts_at' must lie between a day ago and a year from now")
    return Schedule(description.strip(), language, starts_at)


def _instant(value: object) -> float:
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("'starts_at' must be an ISO 8601 date and time string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'starts_at' is not an ISO 8601 date and time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise ValueError("'starts_at' needs a time zone, e.g. 2026-12-01T18:00:00Z or +03:00")
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Created:
    space: Space
    host_token: str
    speaker_token: str


def new_space_id() -> str:
    return secrets.token_urlsafe(9)


def valid_space_id(space_id: str) -> bool:
    return 0 < len(space_id) <= 32 and all(c.isalnum() or c in "-_" for c in space_id)


class SpaceRegistry:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        db: Database,
        signer: TokenSigner,
        data: Path,
        *,
        signing_key: SigningKey,
    ) -> None:
        self.settings = settings
        self.signing_key = signing_key
        self.clock = clock
        self.db = db
        self.signer = signer
        self.data = data
        self.disk = ThreadPoolExecutor(max_workers=2, thread_name_prefix="majlis-disk")
        self._spaces: dict[str, Space] = {}
        # A copy of every recording as it is made (set when nodes share a Redis).
        self.sink: RecordingSink | None = None

    def _space(self, row: SpaceRow) -> Space:
        space = Space(
            space_id=row.id,
            title=row.title,
            created_at=row.created_at,
            settings=self.settings,
            clock=self.clock,
            recording=Recording(self.data / "spaces" / row.id),
            disk=self.disk,
            db=self.db,
            description=row.description,
            language=row.language,
            starts_at=row.starts_at,
        )
        space.pipeline.sink = self.sink
        self._spaces[row.id] = space
        return space

    async def restore(self) -> None:
        """Bring back every space from the database with what its recording holds."""
        for row in await self.db.spaces():
            await self._restore_row(row)

    async def _restore_row(self, row: SpaceRow) -> Space:
        space = self._space(row)
        space.started_at, space.ended_at = row.started_at, row.ended_at
        load_stage(space.stage, await self.db.stage(row.id))
        entries = space.recording.load_entries()
        space.edge.resume_after(entries)
        if space.recording.has_init():
            space.edge.set_init(space.recording.read_init())
        await self._restore_provenance(space, ended=row.status == Status.ENDED)
        if row.status == Status.ENDED:
            space.status = Status.ENDED
            space.edge.end()
        elif entries or row.status == Status.LIVE:
            # It was live when the process (or its node) stopped: live again, waiting for
            # speakers; the recording continues after a discontinuity.
            space.status = Status.LIVE
        return space

    def peek(self, space_id: str) -> Space | None:
        return self._spaces.get(space_id)

    async def adopt(
        self,
        row: SpaceRow,
        stage: StageRows,
        consents: list[tuple[str, str, str, float]],
        recording: tuple[bytes | None, list[SegmentEntry], dict[int, bytes], bytes | None],
    ) -> Space:
        """Take a space over from another node's copy: its record, stage and recording
        replace whatever this node held of it, and it continues as after a restart."""
        old = self._spaces.get(row.id)
        if old is not None:
            await self.evict(row.id)
        init, entries, segments, sealed = recording
        folder = Recording(self.data / "spaces" / row.id)

        def write() -> None:
            rec = folder
            # This node's older copy, if any, must not mix with the cluster's.
            if rec.index_path.exists():
                rec.index_path.unlink()
            shutil.rmtree(rec.segment_dir, ignore_errors=True)
            rec.create()
            if init is not None:
                rec.write_init(init)
            rec.write_copy(entries, segments)
            if sealed is not None:
                write_durably(rec.folder / provenance.FILE_NAME, sealed)

        await asyncio.get_running_loop().run_in_executor(self.disk, write)
        await self.db.import_space(row, stage, consents)
        return await self._restore_row(row)

    async def evict(self, space_id: str) -> None:
        """Stop serving a space here: another node runs it now."""
        space = self._spaces.pop(space_id, None)
        if space is None:
            return
        # Whatever it closes now is not the cluster's recording any more.
        space.pipeline.sink = None
        for session_id in list(space.speakers):
            await space.unpublish(session_id)
        await space.pipeline.stop()

    async def _restore_provenance(self, space: Space, *, ended: bool) -> None:
        loop = asyncio.get_running_loop()
        path = space.recording.folder / provenance.FILE_NAME
        if ended and path.exists():
            space.provenance.sealed = await loop.run_in_executor(self.disk, path.read_bytes)
            return
        # Hash the recording again so the chain continues across the restart.
        space.provenance.chain = await loop.run_in_executor(
            self.disk, provenance.chain_from_recording, space.id, space.recording
        )
        if ended:  # ended, but stopped before provenance.json was durable
            await self._seal(space)

    async def _seal(self, space: Space) -> None:
        """Sign the final chain and publish provenance.json next to the recording."""
        if not space.provenance.claim_seal():
            return  # nothing was recorded, or another end is already signing
        chain = space.provenance.chain
        assert chain is not None
        facts = provenance.SpaceFacts(space.id, space.title, space.started_at, space.ended_at)

        def write() -> bytes:
            body = provenance.seal(facts, chain, self.signing_key)
            write_durably(space.recording.folder / provenance.FILE_NAME, body)
            return body

        sealed = await asyncio.get_running_loop().run_in_executor(self.disk, write)
        space.provenance.sealed = sealed
        if space.pipeline.sink is not None:
            space.pipeline.sink.sealed(space.id, sealed)

    async def create(self, title: str, schedule: Schedule | None = None) -> Created:
        title = title.strip()
        if not title:
            raise ValueError("title must not be empty")
        if len(title) > MAX_TITLE_CHARS:
            raise ValueError(f"title is longer than {MAX_TITLE_CHARS} characters")
        plan = schedule or Schedule()
        row = SpaceRow(
            new_space_id(), title, Status.SCHEDULED.value, self.clock.wall(), None, None,
            plan.description, plan.language, plan.starts_at,
        )  # fmt: skip
        await self.db.insert_space(row)
        space = self._space(row)
        space.recording.create()
        expires = self.token_expiry()
        return Created(
            space,
            self.signer.issue(row.id, Role.HOST, expires),
            self.signer.issue(row.id, Role.SPEAKER, expires),
        )

    def token_expiry(self) -> float:
        return self.clock.wall() + TOKEN_LIFETIME_S

    def get(self, space_id: str) -> Space:
        space = self._spaces.get(space_id) if valid_space_id(space_id) else None
        if space is None:
            raise NotFound(f"no space with id {space_id[:40]!r}")
        return space

    def all(self) -> list[Space]:
        return sorted(self._spaces.values(), key=lambda s: s.created_at, reverse=True)

    async def mark_started(self, space: Space) -> None:
        if space.started_at is not None:
            await self.db.update_status(space.id, Status.LIVE.value, "started_at", space.started_at)

    async def end(self, space: Space) -> None:
        await space.end()
        assert space.ended_at is not None
        await self._seal(space)
        await self.db.update_status(space.id, Status.ENDED.value, "ended_at", space.ended_at)

    async def shutdown(self) -> None:
        """Stop every pipeline: the partly filled segment is closed and made durable."""
        for space in self._spaces.values():
            for session_id in list(space.speakers):
                await space.unpublish(session_id)
            await space.pipeline.stop()
        self.disk.shutdown(wait=True)
