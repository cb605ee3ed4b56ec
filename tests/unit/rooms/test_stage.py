"""The stage's rules as pure code: every permission, every limit, every state change."""

from __future__ import annotations

import pytest

from majlis.errors import Conflict, Forbidden, MajlisError, NotFound, Unauthorized
from majlis.rooms.roles import LINK_SUBJECT, resolve
from majlis.rooms.stage import HOST_SUBJECT, Actor, Stage, clean_name
from majlis.rooms.tokens import Claims, Role

HOST = Actor(HOST_SUBJECT, Role.HOST)
NOW = 1_000.0


def listener(n: int) -> Actor:
    return Actor(f"l-{n}", Role.LISTENER)


def on_stage(stage: Stage, n: int) -> Actor:
    """Listener n raises a hand, is invited by the host and accepts: a speaker."""
    who = listener(n)
    stage.raise_hand(who, f"person {n}", NOW)
    stage.invite(HOST, who.subject, NOW)
    member = stage.accept(who, NOW)
    member.token_id = f"t-{n}"
    return Actor(who.subject, Role.SPEAKER)


def refused(
    error: type[MajlisError], message: str, action: object, *args: object, **kwargs: object
) -> None:
    with pytest.raises(error) as exc:
        action(*args, **kwargs)  # type: ignore[operator]
    assert type(exc.value) is error
    assert message in exc.value.message, exc.value.message


def test_hand_invite_accept_puts_a_listener_on_stage() -> None:
    stage = Stage()
    stage.raise_hand(listener(1), "Amal", NOW)
    assert stage.status_of("l-1") == "hand_raised"
    invitation = stage.invite(HOST, "l-1", NOW + 1)
    assert (invitation.name, invitation.invited_by) == ("Amal", HOST_SUBJECT)
    assert stage.status_of("l-1") == "invited" and not stage.hands
    member = stage.accept(listener(1), NOW + 2)
    assert (member.role, member.name, member.muted) == (Role.SPEAKER, "Amal", False)
    assert stage.status_of("l-1") == "on_stage"


def test_raising_twice_keeps_the_place_in_the_queue() -> None:
    stage = Stage()
    first = stage.raise_hand(listener(1), "a", NOW)
    stage.raise_hand(listener(2), "b", NOW + 1)
    assert stage.raise_hand(listener(1), "a", NOW + 2) is first
    assert list(stage.hands) == ["l-1", "l-2"]
    stage.lower_hand(listener(1))
    stage.lower_hand(listener(1))  # lowering a lowered hand is no error
    assert list(stage.hands) == ["l-2"]


def test_a_speaker_cannot_invite() -> None:
    stage = Stage()
    speaker = on_stage(stage, 1)
    stage.raise_hand(listener(2), "b", NOW)
    refused(Forbidden, "only the host or a co-host can invite", stage.invite, speaker, "l-2", NOW)
    refused(Forbidden, "only the host or a co-host", stage.invite, listener(3), "l-2", NOW)


def test_invitations_need_a_raised_hand() -> None:
    refused(NotFound, "no raised hand with id 'l-9'", Stage().invite, HOST, "l-9", NOW)


def test_the_eleventh_speaker_is_refused() -> None:
    stage = Stage(max_speakers=10)
    for n in range(10):
        on_stage(stage, n)
    stage.raise_hand(listener(10), "k", NOW)
    refused(Conflict, "the stage is full (10 speakers)", stage.invite, HOST, "l-10", NOW)
    refused(Conflict, "the stage is full", stage.join_anonymous, "link", "tok", NOW)


def test_an_invitation_accepted_when_the_stage_filled_meanwhile_is_refused() -> None:
    stage = Stage(max_speakers=1)
    stage.raise_hand(listener(1), "a", NOW)
    stage.invite(HOST, "l-1", NOW)
    stage.join_anonymous("link", "tok", NOW)
    refused(Conflict, "the stage is full (1 speakers)", stage.accept, listener(1), NOW)


def test_cohosts_are_capped_and_only_the_host_promotes() -> None:
    stage = Stage(max_cohosts=2)
    speakers = [on_stage(stage, n) for n in range(3)]
    stage.promote(HOST, speakers[0].subject)
    cohost = Actor(speakers[0].subject, Role.COHOST)
    refused(Forbidden, "only the host can make someone a co-host", stage.promote, cohost, "l-1")
    stage.promote(HOST, speakers[1].subject)
    refused(Conflict, "this space has 2 co-hosts already", stage.promote, HOST, "l-2")
    assert stage.count(Role.COHOST) == 2
    refused(Conflict, "is a cohost, not a speaker", stage.promote, HOST, "l-0")
    stage.demote(HOST, "l-0")
    stage.promote(HOST, "l-2")


def test_a_cohost_manages_speakers_but_not_the_host_or_other_cohosts() -> None:
    stage = Stage()
    for n in range(3):
        on_stage(stage, n)
    stage.host_on_stage("Host", NOW)
    stage.promote(HOST, "l-0")
    stage.promote(HOST, "l-1")
    cohost = Actor("l-0", Role.COHOST)
    stage.mute(cohost, "l-2", lock=True)
    refused(Forbidden, "nobody can mute the host", stage.mute, cohost, HOST_SUBJECT)
    refused(Forbidden, "only the host can block a co-host", stage.block, cohost, "l-1")
    refused(Forbidden, "nobody can block the host", stage.block, cohost, HOST_SUBJECT)
    stage.move_to_audience(cohost, "l-2")
    assert "l-2" not in stage.members


def test_locked_mute_cannot_be_undone_by_the_speaker() -> None:
    stage = Stage()
    speaker = on_stage(stage, 1)
    stage.mute(speaker, speaker.subject)
    stage.unmute(speaker, speaker.subject)
    member = stage.mute(HOST, speaker.subject, lock=True)
    assert member.muted and member.locked
    refused(Forbidden, "muted and locked by a host", stage.unmute, speaker, speaker.subject)
    refused(Forbidden, "only the host or a co-host can lock", stage.mute, speaker, "l-1", lock=True)
    member = stage.unmute(HOST, speaker.subject)
    assert not member.muted and not member.locked


def test_a_speaker_cannot_mute_another_speaker() -> None:
    stage = Stage()
    first, _ = on_stage(stage, 1), on_stage(stage, 2)
    refused(Forbidden, "only the host or a co-host can mute someone else", stage.mute, first, "l-2")


def test_leaving_and_moving_revoke_the_speaker_token() -> None:
    stage = Stage()
    speaker = on_stage(stage, 1)
    on_stage(stage, 2)
    stage.leave(speaker)
    stage.move_to_audience(HOST, "l-2")
    assert stage.revoked == {"t-1", "t-2"}
    assert stage.status_of("l-1") == "audience"
    stage.raise_hand(listener(1), "again", NOW)  # back in the audience, may ask again


def test_the_host_does_not_leave() -> None:
    stage = Stage()
    stage.host_on_stage("Host", NOW)
    refused(Forbidden, "end the space instead", stage.leave, HOST)


def test_blocking_bans_from_queue_invitation_and_stage() -> None:
    stage = Stage()
    on_stage(stage, 1)
    stage.raise_hand(listener(2), "b", NOW)
    stage.raise_hand(listener(3), "c", NOW)
    stage.invite(HOST, "l-3", NOW)
    for subject in ("l-1", "l-2", "l-3"):
        stage.block(HOST, subject)
    assert stage.banned == {"l-1", "l-2", "l-3"}
    assert not stage.members and not stage.hands and not stage.invitations
    assert stage.revoked == {"t-1"}
    refused(NotFound, "nobody with id 'l-9'", stage.block, HOST, "l-9")
    refused(Forbidden, "only the host or a co-host can block", stage.block, listener(4), "l-1")


def test_blocking_a_link_speaker_revokes_the_link_moving_them_does_not() -> None:
    stage = Stage()
    moved = stage.join_anonymous("a", "link-token", NOW)
    stage.move_to_audience(HOST, moved.subject)
    assert stage.revoked == set()
    blocked = stage.join_anonymous("b", "link-token", NOW)
    stage.block(HOST, blocked.subject)
    assert stage.revoked == {"link-token"}


def test_link_speakers_leave_with_their_session_invited_ones_stay() -> None:
    stage = Stage()
    anon = stage.join_anonymous("a", "link", NOW)
    anon.session_id = "s1"
    on_stage(stage, 1)
    stage.members["l-1"].session_id = "s2"
    stage.session_gone("s1")
    stage.session_gone("s2")
    assert list(stage.members) == ["l-1"] and stage.members["l-1"].session_id is None


def test_promoting_a_link_speaker_is_refused() -> None:
    stage = Stage()
    anon = stage.join_anonymous("a", "link", NOW)
    refused(Conflict, "shared speaker link cannot be a co-host", stage.promote, HOST, anon.subject)


def test_listeners_on_stage_or_invited_do_not_raise_hands() -> None:
    stage = Stage()
    on_stage(stage, 1)
    refused(Conflict, "you are on the stage already", stage.raise_hand, listener(1), "x", NOW)
    refused(Conflict, "only listeners raise a hand", stage.raise_hand, HOST, "x", NOW)
    stage.raise_hand(listener(2), "b", NOW)
    stage.invite(HOST, "l-2", NOW)
    refused(Conflict, "invited to the stage already", stage.raise_hand, listener(2), "b", NOW)
    stage.decline(listener(2))
    refused(NotFound, "you have no invitation", stage.decline, listener(2))
    refused(NotFound, "you have no invitation", stage.accept, listener(2), NOW)


def test_every_change_bumps_the_version() -> None:
    stage = Stage()
    versions = [stage.version]
    stage.raise_hand(listener(1), "a", NOW)
    versions.append(stage.version)
    stage.invite(HOST, "l-1", NOW)
    versions.append(stage.version)
    stage.accept(listener(1), NOW)
    versions.append(stage.version)
    assert versions == sorted(set(versions))


# -- resolving tokens against the stage --------------------------------------------------


def claims(role: Role, subject: str = "", token_id: str = "t", space: str = "sp") -> Claims:
    return Claims(space, role, 1e12, token_id, subject)


def test_the_role_comes_from_the_stage_not_the_token() -> None:
    stage = Stage()
    on_stage(stage, 1)
    assert resolve(stage, claims(Role.LISTENER, "l-1"), "sp").role is Role.SPEAKER
    stage.promote(HOST, "l-1")
    assert resolve(stage, claims(Role.SPEAKER, "l-1"), "sp").role is Role.COHOST
    assert resolve(stage, claims(Role.HOST), "sp") == HOST
    assert resolve(stage, claims(Role.SPEAKER), "sp") == Actor(LINK_SUBJECT, Role.SPEAKER)
    assert resolve(stage, claims(Role.LISTENER, "l-7"), "sp").role is Role.LISTENER


def test_revoked_banned_and_stale_tokens_stop_working() -> None:
    stage = Stage()
    on_stage(stage, 1)
    on_stage(stage, 2)
    stage.move_to_audience(HOST, "l-1")
    refused(
        Unauthorized,
        "token has been revoked",
        resolve,
        stage,
        claims(Role.SPEAKER, "l-1", "t-1"),
        "sp",
    )
    # Their listener token still works: they are in the audience again.
    assert resolve(stage, claims(Role.LISTENER, "l-1", "x"), "sp").role is Role.LISTENER
    stage.block(HOST, "l-2")
    for role in (Role.SPEAKER, Role.LISTENER):
        refused(
            Forbidden, "removed from this space", resolve, stage, claims(role, "l-2", "y"), "sp"
        )
    refused(Forbidden, "no longer on the stage", resolve, stage, claims(Role.SPEAKER, "l-5"), "sp")
    refused(Forbidden, "another space", resolve, stage, claims(Role.HOST), "other")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (None, "dflt"),
        ("  Amal  ", "Amal"),
        ("a\nb\x00c", "abc"),
        ("x" * 100, "x" * 60),
        ("", "dflt"),
    ],
)
def test_names_are_cleaned(raw: str | None, name: str) -> None:
    assert clean_name(raw, "dflt") == name


def test_a_name_must_be_a_string() -> None:
    with pytest.raises(ValueError, match="name must be a string"):
        clean_name(5, "d")
