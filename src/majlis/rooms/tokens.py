"""Signed, expiring capability tokens: `<base64url claims>.<base64url HMAC-SHA256>`.

A token names one space, one role and (except the shared invite-anyone speaker link) one
subject: the person it was issued to. Whoever holds it may do what the role allows in that
space and nothing else; the stage decides the current role of a subject (a speaker promoted to
co-host keeps their token), and revocations and bans are checked on every use
(majlis.rooms.roles). No passwords are needed to listen: media URLs carry no token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from enum import StrEnum

from majlis.errors import Forbidden, Unauthorized

MAX_TOKEN_CHARS = 1024


class Role(StrEnum):
    HOST = "host"
    COHOST = "cohost"
    SPEAKER = "speaker"
    # A listener's anonymous session: raise a hand, accept an invitation, react.
    LISTENER = "audience"


@dataclass(frozen=True, slots=True)
class Claims:
    space_id: str
    role: Role
    expires_at: float
    token_id: str
    # Who the token was issued to; "" for the host's and the shared speaker link's tokens.
    subject: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("token secret must be at least 32 bytes")
        self._secret = secret

    def issue(self, space_id: str, role: Role, expires_at: float, subject: str = "") -> str:
        raw: dict[str, str | int] = {
            "s": space_id, "r": role.value, "e": int(expires_at), "i": secrets.token_hex(8)
        }  # fmt: skip
        if subject:
            raw["u"] = subject
        body = json.dumps(raw, separators=(",", ":")).encode()
        payload = _b64(body)
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())

    def verify(self, token: str, now: float) -> Claims:
        # Tokens are ASCII; anything else would crash encode("ascii") and compare_digest.
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1 or not token.isascii():
            raise Unauthorized("token is malformed")
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise Unauthorized("token signature is invalid")
        try:
            raw = json.loads(_unb64(payload))
            if not isinstance(raw, dict):
                raise TypeError("claims")
            subject = raw.get("u", "")
            if not isinstance(subject, str):
                raise ValueError("subject")
            claims = Claims(str(raw["s"]), Role(raw["r"]), float(raw["e"]), str(raw["i"]), subject)
        except (ValueError, KeyError, TypeError):
            raise Unauthorized("token is malformed") from None
        if claims.expires_at < now:
            raise Unauthorized("token has expired")
        return claims


def bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization: Bearer token")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return value.strip()


def require_role(claims: Claims, space_id: str, *roles: Role) -> None:
    if claims.space_id != space_id:
        raise Forbidden("token is for another space")
    if claims.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise Forbidden(f"this action needs a {allowed} token, not {claims.role.value}")
