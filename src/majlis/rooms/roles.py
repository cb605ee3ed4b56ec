"""From a verified token to who is asking now: revocations, bans and the stage's current role.

A token's signature says who it was issued to; what that person may do is decided at each
use from the stage, so a removal, a block or a promotion takes effect at once without
issuing or chasing tokens.
"""

from __future__ import annotations

from majlis.errors import Forbidden, Unauthorized
from majlis.rooms.stage import HOST_SUBJECT, Actor, Stage
from majlis.rooms.tokens import Claims, Role

# The shared "invite anyone" speaker link carries no subject: each publisher is anonymous.
LINK_SUBJECT = ""


def resolve(stage: Stage, claims: Claims, space_id: str) -> Actor:
    """The actor behind ``claims`` in this space, or 401/403 when the token no longer works."""
    if claims.space_id != space_id:
        raise Forbidden("token is for another space")
    subject = claims.subject
    # Banned first: every token of a blocked person gets the same answer.
    if subject and subject in stage.banned:
        raise Forbidden("you have been removed from this space")
    if claims.token_id in stage.revoked:
        raise Unauthorized("token has been revoked")
    if claims.role is Role.HOST:
        return Actor(HOST_SUBJECT, Role.HOST)
    if not subject:
        if claims.role is not Role.SPEAKER:
            raise Unauthorized("token names nobody")
        return Actor(LINK_SUBJECT, Role.SPEAKER)
    member = stage.members.get(subject)
    if member is not None:
        return Actor(subject, member.role)
    if claims.role is not Role.LISTENER:
        # A speaker's token outlives nothing: off the stage it is only a listener's.
        raise Forbidden("you are no longer on the stage")
    return Actor(subject, Role.LISTENER)


def require(actor: Actor, *roles: Role) -> None:
    if actor.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise Forbidden(f"this action needs a {allowed} token, not {actor.role.value}")
