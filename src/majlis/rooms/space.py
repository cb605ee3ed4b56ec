"""A space: its lifecycle, its speakers, and its media pipeline."""

from __future__ import annotations

import asyncio
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from majlis.clock import Clock
from majlis.config import Settings
from majlis.errors import Conflict, NotFound, Unavailable
from majlis.ingest.publisher import Publisher
from majlis.media.inputbuffer import InputBuffer
from majlis.media.mixer import Mixer
from majlis.media.opusinput import OpusInput
from majlis.packaging.liveedge import LiveEdge
from majlis.rooms.pipeline import LivePipeline
from majlis.rooms.tokens import Role
from majlis.storage.recording import Recording
from majlis.trust.audience import ListenerSessions
from majlis.trust.provenance import ProvenanceLog

log = logging.getLogger(__name__)


class Status(StrEnum):
    # Created, nobody has spoken yet: listeners see a waiting page, not an error.
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


@dataclass(slots=True)
class Speaker:
    id: str  # the WHIP session id: whoever knows it can end the session, so never shown
    public_id: str  # what listeners see in the room state
    role: Role
    name: str
    publisher: Publisher
    joined_at: float


class Space:
    def __init__(
        self,
        *,
        space_id: str,
        title: str,
        created_at: float,
        settings: Settings,
        clock: Clock,
        recording: Recording,
        disk: ThreadPoolExecutor,
    ) -> None:
        self.id = space_id
        self.title = title
        self.created_at = created_at
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.status = Status.SCHEDULED
        self.settings = settings
        self.clock = clock
        self.recording = recording
        self.mixer = Mixer()
        self.edge = LiveEdge(
            part_duration=settings.part_duration,
            segment_parts=settings.segment_parts,
            live_window=settings.live_window_segments,
        )
        self.provenance = ProvenanceLog(space_id)
        self.pipeline = LivePipeline(
            settings=settings, clock=clock, mixer=self.mixer, edge=self.edge,
            recording=recording, disk=disk, provenance=self.provenance,
        )  # fmt: skip
        self.speakers: dict[str, Speaker] = {}
        # Open listener sessions (docs/metrics.md); media requests never touch this.
        self.listeners = ListenerSessions()
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    async def publish(self, role: Role, name: str, offer_sdp: str) -> tuple[str, str]:
        """Answer a WHIP offer; returns (session id, answer SDP). Starts the space if needed."""
        if self.status is Status.ENDED:
            raise Conflict("this space has ended; nobody can publish to it")
        if len(self.speakers) >= self.settings.max_speakers:
            raise Unavailable(f"the stage is full ({self.settings.max_speakers} speakers)", 30)
        session_id = secrets.token_urlsafe(12)
        source = OpusInput(InputBuffer(), self.pipeline.stats.decode)
        publisher = Publisher(
            session_id, source, self.clock, self.settings.speaker_stall_timeout, self._on_gone
        )
        try:
            answer = await publisher.answer(offer_sdp)
        except BaseException:
            await publisher.close()
            raise
        async with self._lock:
            if self.ended:
                await publisher.close()
                raise Conflict("this space ended while the offer was being answered")
            self.speakers[session_id] = Speaker(
                session_id, secrets.token_hex(4), role, name, publisher, self.clock.wall()
            )
            self.mixer.add_input(session_id, source)
            if not self.pipeline.running:
                await self.pipeline.start()
                self.status = Status.LIVE
                self.started_at = self.clock.wall()
        return session_id, answer

    @property
    def ended(self) -> bool:
        return self.status is Status.ENDED

    def _on_gone(self, session_id: str, reason: str) -> None:
        self._background.add(asyncio.get_running_loop().create_task(self._drop(session_id)))
        log.info("speaker %s left space %s: %s", session_id, self.id, reason)

    async def unpublish(self, session_id: str) -> None:
        """Take a speaker off the stage; unknown or already gone sessions raise NotFound."""
        speaker = self.speakers.pop(session_id, None)
        if speaker is None:
            raise NotFound("no such WHIP session in this space")
        self.mixer.remove_input(session_id)
        await speaker.publisher.close()

    async def _drop(self, session_id: str) -> None:
        if session_id in self.speakers:
            await self.unpublish(session_id)

    async def end(self) -> None:
        async with self._lock:
            if self.status is Status.ENDED:
                return
            for session_id in list(self.speakers):
                await self.unpublish(session_id)
            await self.pipeline.stop()
            self.status = Status.ENDED
            self.ended_at = self.clock.wall()
            self.edge.end()

    def state(self) -> dict[str, Any]:
        """Who is on stage and who is talking: small, the same for every listener."""
        levels = {lvl.input_id: lvl for lvl in self.mixer.levels(self.clock.monotonic())}
        stage = []
        for speaker in self.speakers.values():
            level = levels.get(speaker.id)
            stage.append(
                {
                    "id": speaker.public_id,
                    "role": speaker.role.value,
                    "name": speaker.name,
                    "level_dbfs": level.level_dbfs if level else -100.0,
                    "talking": bool(level and level.talking and not level.muted),
                }
            )
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "stage": stage,
            "segments": self.edge.next_msn,
        }
