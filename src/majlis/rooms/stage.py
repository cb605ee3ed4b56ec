"""The stage and its rules, as pure code: who is on it, who waits, and who may do what to whom.

Every action names its actor (a subject and its *current* role, see majlis.rooms.roles) and
raises Forbidden (the role may not do this), Conflict (allowed, but not in this state) or
NotFound (no such person here). The space applies what follows from a change (the mixer's
mute, closing a WHIP session, pushing to WebSockets) and persists it; this module only
decides. Time is passed in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from majlis.errors import Conflict, Forbidden, NotFound
from majlis.rooms.tokens import Role

HOSTS = (Role.HOST, Role.COHOST)
HOST_SUBJECT = "host"
MAX_NAME_CHARS = 60
# Raised hands kept at once; past it new hands are refused (a host reads a queue, not a crowd).
MAX_HANDS = 500


@dataclass(slots=True)
class Member:
    """Someone on the stage: the host while publishing, co-hosts, speakers."""

    subject: str
    role: Role
    name: str
    since: float
    muted: bool = False
    # Muted by a host or co-host with lock: the speaker cannot unmute themselves.
    locked: bool = False
    # The WHIP session publishing for them (whoever knows it can end it: never shown).
    session_id: str | None = None
    # The token that let them on stage: revoked when they leave it or are removed.
    token_id: str = ""
    # Came through the shared speaker link: no identity beyond their WHIP session.
    anonymous: bool = False


@dataclass(frozen=True, slots=True)
class Hand:
    subject: str
    name: str
    raised_at: float


@dataclass(frozen=True, slots=True)
class Invitation:
    subject: str
    name: str
    invited_by: str
    at: float


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking, with the role the stage gives them now."""

    subject: str
    role: Role


def clean_name(value: object, default: str) -> str:
    """A display name: a string, trimmed, without control characters, at most 60 characters."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError("name must be a string")
    name = "".join(c for c in value if c.isprintable()).strip()[:MAX_NAME_CHARS]
    return name or default


class Stage:
    def __init__(self, max_speakers: int = 10, max_cohosts: int = 2) -> None:
        self.max_speakers = max_speakers
        self.max_cohosts = max_cohosts
        self.members: dict[str, Member] = {}
        # Insertion order is the queue's order.
        self.hands: dict[str, Hand] = {}
        self.invitations: dict[str, Invitation] = {}
        self.banned: set[str] = set()
        # Token ids (claims.token_id) that no longer work.
        self.revoked: set[str] = set()
        # Bumped on every change: the room state's version and the WebSockets' wake-up.
        self.version = 0

    # -- reading ---------------------------------------------------------------------------

    def count(self, role: Role) -> int:
        return sum(1 for m in self.members.values() if m.role is role)

    def member(self, subject: str) -> Member:
        member = self.members.get(subject)
        if member is None:
            raise NotFound(f"nobody with id {subject[:40]!r} is on the stage")
        return member

    def status_of(self, subject: str) -> str:
        """Where a person stands: banned, on_stage, invited, hand_raised or audience."""
        if subject in self.banned:
            return "banned"
        if subject in self.members:
            return "on_stage"
        if subject in self.invitations:
            return "invited"
        return "hand_raised" if subject in self.hands else "audience"

    # -- listeners -------------------------------------------------------------------------

    def raise_hand(self, actor: Actor, name: str, now: float) -> Hand:
        if actor.role is not Role.LISTENER:
            raise Conflict("you are on the stage already; only listeners raise a hand")
        self._not_on_stage(actor.subject)
        if actor.subject in self.invitations:
            raise Conflict("you are invited to the stage already: accept or decline")
        if (hand := self.hands.get(actor.subject)) is not None:
            return hand
        if len(self.hands) >= MAX_HANDS:
            raise Conflict(f"the hand-raise queue is full ({MAX_HANDS})")
        hand = self.hands[actor.subject] = Hand(actor.subject, name, now)
        self.changed()
        return hand

    def lower_hand(self, actor: Actor) -> None:
        if self.hands.pop(actor.subject, None) is not None:
            self.changed()

    def accept(self, actor: Actor, now: float) -> Member:
        """The invited listener steps on the stage (consent is checked by the caller)."""
        invitation = self.invitations.get(actor.subject)
        if invitation is None:
            raise NotFound("you have no invitation to the stage")
        self.room_for_a_speaker()
        del self.invitations[actor.subject]
        member = Member(actor.subject, Role.SPEAKER, invitation.name, now)
        self.members[actor.subject] = member
        self.changed()
        return member

    def decline(self, actor: Actor) -> None:
        if self.invitations.pop(actor.subject, None) is None:
            raise NotFound("you have no invitation to the stage")
        self.changed()

    # -- hosts and co-hosts ----------------------------------------------------------------

    def invite(self, actor: Actor, subject: str, now: float) -> Invitation:
        self._host_or_cohost(actor, "invite someone to the stage")
        hand = self.hands.get(subject)
        if hand is None:
            raise NotFound(f"no raised hand with id {subject[:40]!r}")
        self.room_for_a_speaker()
        del self.hands[subject]
        invitation = self.invitations[subject] = Invitation(subject, hand.name, actor.subject, now)
        self.changed()
        return invitation

    def mute(self, actor: Actor, subject: str, *, lock: bool = False) -> Member:
        member = self.member(subject)
        if actor.subject != subject:
            self._may_manage(actor, member, "mute")
        elif lock:
            raise Forbidden("only the host or a co-host can lock a microphone")
        member.muted = True
        member.locked = member.locked or lock
        self.changed()
        return member

    def unmute(self, actor: Actor, subject: str) -> Member:
        member = self.member(subject)
        if actor.subject != subject:
            self._may_manage(actor, member, "unmute")
            member.locked = False
        elif member.locked:
            raise Forbidden("your microphone was muted and locked by a host; ask them to unmute")
        member.muted = False
        self.changed()
        return member

    def move_to_audience(self, actor: Actor, subject: str) -> Member:
        member = self.member(subject)
        self._may_manage(actor, member, "move to the audience")
        return self._remove(member)

    def leave(self, actor: Actor) -> Member:
        member = self.member(actor.subject)
        if member.role is Role.HOST:
            raise Forbidden("the host does not leave the stage: end the space instead")
        return self._remove(member)

    def block(self, actor: Actor, subject: str) -> Member | None:
        """Remove and ban someone: on stage, invited or in the queue. Returns the member."""
        if subject == HOST_SUBJECT:
            raise Forbidden("nobody can block the host")
        member = self.members.get(subject)
        if member is not None:
            self._may_manage(actor, member, "block")
        else:
            self._host_or_cohost(actor, "block someone")
            if subject not in self.hands and subject not in self.invitations:
                raise NotFound(f"nobody with id {subject[:40]!r} is on the stage or in the queue")
        self.hands.pop(subject, None)
        self.invitations.pop(subject, None)
        self.banned.add(subject)
        if member is not None:
            if member.anonymous:
                # Nothing but the shared speaker link names them: it stops working.
                self.revoked.add(member.token_id)
            return self._remove(member)
        self.changed()
        return None

    def promote(self, actor: Actor, subject: str) -> Member:
        if actor.role is not Role.HOST:
            raise Forbidden("only the host can make someone a co-host")
        member = self.member(subject)
        if member.role is not Role.SPEAKER:
            raise Conflict(f"{member.name} is a {member.role.value}, not a speaker")
        if member.anonymous:
            raise Conflict("a speaker from the shared speaker link cannot be a co-host")
        if self.count(Role.COHOST) >= self.max_cohosts:
            raise Conflict(f"this space has {self.max_cohosts} co-hosts already")
        member.role = Role.COHOST
        self.changed()
        return member

    def demote(self, actor: Actor, subject: str) -> Member:
        if actor.role is not Role.HOST:
            raise Forbidden("only the host can make a co-host a speaker again")
        member = self.member(subject)
        if member.role is not Role.COHOST:
            raise Conflict(f"{member.name} is not a co-host")
        self.room_for_a_speaker()
        member.role = Role.SPEAKER
        self.changed()
        return member

    # -- publishers ------------------------------------------------------------------------

    def host_on_stage(self, name: str, now: float) -> Member:
        member = self.members.get(HOST_SUBJECT)
        if member is None:
            member = self.members[HOST_SUBJECT] = Member(HOST_SUBJECT, Role.HOST, name, now)
        member.name = name
        self.changed()
        return member

    def join_anonymous(self, name: str, token_id: str, now: float) -> Member:
        """A publisher with the shared speaker link: on stage while their session lasts."""
        self.room_for_a_speaker()
        subject = "a-" + secrets.token_hex(4)
        member = Member(subject, Role.SPEAKER, name, now, token_id=token_id, anonymous=True)
        self.members[subject] = member
        self.changed()
        return member

    def session_gone(self, session_id: str) -> Member | None:
        """A WHIP session ended: anonymous speakers leave with it, others stay on stage."""
        for member in list(self.members.values()):
            if member.session_id == session_id:
                member.session_id = None
                if member.anonymous:
                    del self.members[member.subject]
                self.changed()
                return member
        return None

    # -- rules shared by the actions -------------------------------------------------------

    def changed(self) -> None:
        self.version += 1

    def _remove(self, member: Member) -> Member:
        del self.members[member.subject]
        if member.token_id and not member.anonymous:
            self.revoked.add(member.token_id)
        self.changed()
        return member

    def _not_on_stage(self, subject: str) -> None:
        if subject in self.members:
            raise Conflict("you are on the stage already")

    def room_for_a_speaker(self) -> None:
        if self.count(Role.SPEAKER) >= self.max_speakers:
            raise Conflict(f"the stage is full ({self.max_speakers} speakers)")

    @staticmethod
    def _host_or_cohost(actor: Actor, what: str) -> None:
        if actor.role not in HOSTS:
            raise Forbidden(f"only the host or a co-host can {what}")

    def _may_manage(self, actor: Actor, target: Member, what: str) -> None:
        self._host_or_cohost(actor, what + " someone else")
        if target.role is Role.HOST:
            raise Forbidden(f"nobody can {what} the host")
        if target.role is Role.COHOST and actor.role is not Role.HOST:
            raise Forbidden(f"only the host can {what} a co-host")
