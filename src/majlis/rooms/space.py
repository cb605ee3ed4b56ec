"""A space: its lifecycle, its stage and speakers, and its media pipeline.

The stage's rules live in majlis.rooms.stage; a space applies what follows from each change
(the mixer's mute, closing a WHIP session), stores the stage and wakes its watchers (the
participants' WebSockets)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from majlis.clock import Clock
from majlis.config import Settings
from majlis.errors import Conflict, Forbidden, NotFound, Unavailable
from majlis.ingest.publisher import Publisher
from majlis.media.inputbuffer import InputBuffer
from majlis.media.mixer import Mixer
from majlis.media.opusinput import OpusInput
from majlis.packaging.liveedge import LiveEdge
from majlis.rooms.pipeline import LivePipeline
from majlis.rooms.reactions import Reactions
from majlis.rooms.roles import LINK_SUBJECT
from majlis.rooms.stage import HOST_SUBJECT, Actor, Hand, Invitation, Member, Stage
from majlis.rooms.tokens import Role
from majlis.storage.database import Database, StageRows
from majlis.storage.recording import Recording
from majlis.trust.audience import ListenerSessions
from majlis.trust.provenance import ProvenanceLog

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    subject: str = ""


def stage_rows(stage: Stage) -> StageRows:
    """What is stored of a stage: anonymous speakers leave with their session, so not them."""
    return StageRows(
        members=[
            (m.subject, m.role.value, m.name, m.since, int(m.muted), int(m.locked), m.token_id)
            for m in stage.members.values()
            if not m.anonymous
        ],
        hands=[(h.subject, h.name, h.raised_at) for h in stage.hands.values()],
        invitations=[(i.subject, i.name, i.invited_by, i.at) for i in stage.invitations.values()],
        banned=sorted(stage.banned),
        revoked=sorted(stage.revoked),
    )


def load_stage(stage: Stage, rows: StageRows) -> None:
    for subject, role, name, since, muted, locked, token_id in rows.members:
        member = Member(subject, Role(role), name, since, bool(muted), bool(locked))
        member.token_id = token_id
        stage.members[subject] = member
    for subject, name, raised_at in rows.hands:
        stage.hands[subject] = Hand(subject, name, raised_at)
    for subject, name, invited_by, at in rows.invitations:
        stage.invitations[subject] = Invitation(subject, name, invited_by, at)
    stage.banned.update(rows.banned)
    stage.revoked.update(rows.revoked)


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
        db: Database,
        description: str = "",
        language: str | None = None,
        starts_at: float | None = None,
    ) -> None:
        self.id = space_id
        self.title = title
        self.description = description
        self.language = language
        self.starts_at = starts_at
        self.db = db
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
        self.stage = Stage(settings.stage_speakers, settings.max_cohosts)
        self.reactions = Reactions()
        # Set on every change of the stage or the lifecycle: each participant's WebSocket
        # holds one and sends that participant's view when woken.
        self.watchers: set[asyncio.Event] = set()
        # Open listener sessions (docs/metrics.md); media requests never touch this.
        self.listeners = ListenerSessions()
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    async def publish(
        self, actor: Actor, name: str, offer_sdp: str, token_id: str
    ) -> tuple[str, str]:
        """Answer a WHIP offer; returns (session id, answer SDP). Starts the space if needed."""
        if self.status is Status.ENDED:
            raise Conflict("this space has ended; nobody can publish to it")
        if actor.role is Role.LISTENER:
            raise Forbidden("listeners publish only after accepting an invitation to the stage")
        if actor.subject == LINK_SUBJECT:
            self.stage.room_for_a_speaker()
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
            try:
                if self.ended:
                    raise Conflict("this space ended while the offer was being answered")
                member = self._publishing_member(actor, name, token_id)
            except BaseException:
                await publisher.close()
                raise
            replaced, member.session_id = member.session_id, session_id
            self.speakers[session_id] = Speaker(
                session_id, member.subject, member.role, member.name, publisher,
                self.clock.wall(), member.subject,
            )  # fmt: skip
            self.mixer.add_input(session_id, source)
            self.mixer.set_muted(session_id, member.muted)
            if not self.pipeline.running:
                await self.pipeline.start()
                self.status = Status.LIVE
                self.started_at = self.clock.wall()
            if replaced in self.speakers and member.role is not Role.HOST:
                # The same person again (a reload, a new network): the newest session wins.
                # The host may publish several sources at once, as before the stage existed.
                await self._close(replaced)
        self.touch()
        return session_id, answer

    def _publishing_member(self, actor: Actor, name: str, token_id: str) -> Member:
        now = self.clock.wall()
        if actor.role is Role.HOST:
            return self.stage.host_on_stage(name or "host", now)
        if actor.subject == LINK_SUBJECT:
            return self.stage.join_anonymous(name or "speaker", token_id, now)
        member = self.stage.members.get(actor.subject)
        if member is None:
            raise Forbidden("you are no longer on the stage")
        if name:
            member.name = name
        return member

    @property
    def ended(self) -> bool:
        return self.status is Status.ENDED

    def _on_gone(self, session_id: str, reason: str) -> None:
        self._background.add(asyncio.get_running_loop().create_task(self._drop(session_id)))
        log.info("speaker %s left space %s: %s", session_id, self.id, reason)

    async def unpublish(self, session_id: str) -> None:
        """Close a WHIP session; unknown or already gone sessions raise NotFound. Anonymous
        speakers leave the stage with their session; the others stay on it, silent."""
        subject = self.speakers[session_id].subject if session_id in self.speakers else ""
        await self._close(session_id)
        others = [s.id for s in self.speakers.values() if s.subject == subject]
        member = self.stage.members.get(subject)
        if others and member is not None and member.session_id == session_id:
            member.session_id = others[-1]
        elif not others:
            self.stage.session_gone(session_id)
        self.touch()

    async def _close(self, session_id: str) -> None:
        speaker = self.speakers.pop(session_id, None)
        if speaker is None:
            raise NotFound("no such WHIP session in this space")
        self.mixer.remove_input(session_id)
        await speaker.publisher.close()

    # -- the stage's effects ----------------------------------------------------------------

    def touch(self) -> None:
        """Something participants see changed: wake every watcher."""
        for event in self.watchers:
            event.set()

    async def save(self) -> None:
        """Store the stage and wake the watchers (after every stage action)."""
        self.touch()
        await self.db.save_stage(self.id, stage_rows(self.stage), self.clock.wall())

    async def act(self, change: Callable[[], T]) -> T:
        """Apply one stage action and what follows from it, then store the stage."""
        result = change()
        if isinstance(result, Member):
            if self.stage.members.get(result.subject) is result:
                self.sync_mute(result)
            else:
                await self.off_stage(result)
        await self.save()
        return result

    def sync_mute(self, member: Member) -> None:
        """The mixer follows the stage: a muted speaker is dropped from the mix."""
        for speaker in self.speakers.values():
            if speaker.subject == member.subject:
                self.mixer.set_muted(speaker.id, member.muted)

    async def off_stage(self, member: Member) -> None:
        """Someone left the stage (moved, removed, left): their WHIP session closes now."""
        for speaker in list(self.speakers.values()):
            if speaker.subject == member.subject:
                await self._close(speaker.id)
        member.session_id = None

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
            self.stage.changed()
        self.touch()

    def on_stage(self) -> list[Member]:
        """Who listeners see on the stage: everyone on it but a host who is not publishing."""
        return [
            m
            for m in self.stage.members.values()
            if m.session_id is not None or m.subject != HOST_SUBJECT
        ]

    def state(self) -> dict[str, Any]:
        """Who is on stage and who is talking: small, the same for every listener."""
        levels = {lvl.input_id: lvl for lvl in self.mixer.levels(self.clock.monotonic())}
        stage = []
        for member in self.on_stage():
            level = levels.get(member.session_id) if member.session_id else None
            stage.append(
                {
                    "id": member.subject,
                    "role": member.role.value,
                    "name": member.name,
                    "muted": member.muted,
                    "connected": member.session_id is not None,
                    "level_dbfs": level.level_dbfs if level else -100.0,
                    "talking": bool(level and level.talking and not level.muted),
                }
            )
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "language": self.language,
            "status": self.status.value,
            "version": self.stage.version,
            "starts_at": self.starts_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "stage": stage,
            "hands": len(self.stage.hands),
            "listeners": len(self.listeners),
            "reactions": self.reactions.summary(self.clock.wall()),
            "segments": self.edge.next_msn,
        }
