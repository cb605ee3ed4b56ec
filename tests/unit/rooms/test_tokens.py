"""Capability tokens: roundtrip, tampering, expiry, roles, and the Authorization header."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from majlis.clock import FakeClock
from majlis.errors import Forbidden, MajlisError, Unauthorized
from majlis.rooms.tokens import (
    MAX_TOKEN_CHARS,
    Claims,
    Role,
    TokenSigner,
    bearer,
    require_role,
)

SECRET = b"k" * 32


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(payload: str, secret: bytes = SECRET) -> str:
    """A token signed with ``secret`` over an arbitrary payload (the documented format)."""
    signature = hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{b64(signature)}"


def claims_payload(raw: object) -> str:
    return b64(json.dumps(raw).encode())


def expect(error: type[MajlisError], message: str, token: str, now: float = 0.0) -> None:
    with pytest.raises(error) as exc:
        TokenSigner(SECRET).verify(token, now)
    assert type(exc.value) is error
    assert exc.value.message == message


def test_roundtrip() -> None:
    clock = FakeClock()
    signer = TokenSigner(SECRET)
    token = signer.issue("sp1", Role.SPEAKER, clock.wall() + 3600)
    claims = signer.verify(token, clock.wall())
    assert claims.space_id == "sp1"
    assert claims.role is Role.SPEAKER
    assert claims.expires_at == int(clock.wall() + 3600)
    assert len(claims.token_id) == 16
    assert token.isascii() and "=" not in token


def test_each_token_has_its_own_id() -> None:
    signer = TokenSigner(SECRET)
    ids = {signer.verify(signer.issue("s", Role.HOST, 10), 0).token_id for _ in range(50)}
    assert len(ids) == 50


def test_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match=r"^token secret must be at least 32 bytes$"):
        TokenSigner(b"short")


def test_tampered_payload_is_rejected() -> None:
    token = TokenSigner(SECRET).issue("sp1", Role.SPEAKER, 10_000)
    payload, signature = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw["r"] = "host"
    expect(Unauthorized, "token signature is invalid", f"{claims_payload(raw)}.{signature}")


def test_tampered_signature_is_rejected() -> None:
    token = TokenSigner(SECRET).issue("sp1", Role.SPEAKER, 10_000)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    expect(Unauthorized, "token signature is invalid", flipped)
    expect(Unauthorized, "token signature is invalid", token.split(".")[0] + ".")


def test_token_from_another_server_is_rejected() -> None:
    token = TokenSigner(b"z" * 32).issue("sp1", Role.HOST, 10_000)
    expect(Unauthorized, "token signature is invalid", token)


def test_expired() -> None:
    clock = FakeClock()
    signer = TokenSigner(SECRET)
    expires = int(clock.wall()) + 60
    token = signer.issue("sp1", Role.HOST, expires)
    clock.advance(60)
    assert signer.verify(token, clock.wall()).expires_at == expires  # the last valid second
    clock.advance(0.5)
    expect(Unauthorized, "token has expired", token, clock.wall())


@pytest.mark.parametrize(
    "token",
    [
        "",
        "no-dot",
        "a.b.c",
        "x" * (MAX_TOKEN_CHARS + 1) + ".sig",
        forge("!!!not-base64!!!"),
        forge(b64(b"not json")),
        forge(b64(b"\xff\xfe")),
        forge(claims_payload(["s", "r", "e", "i"])),
        forge(claims_payload("a string")),
        forge(claims_payload({"s": "sp1", "r": "host", "e": 10})),  # no id
        forge(claims_payload({"s": "sp1", "r": "listener", "e": 10, "i": "x"})),  # no such role
        forge(claims_payload({"s": "sp1", "r": "host", "e": "soon", "i": "x"})),
        forge(claims_payload({"s": "sp1", "r": "host", "e": None, "i": "x"})),
    ],
)
def test_malformed(token: str) -> None:
    expect(Unauthorized, "token is malformed", token)


@pytest.mark.parametrize("token", ["é.abc", "abc.é", "абв.где", "\udcff.x"])
def test_non_ascii_token_is_malformed_not_a_crash(token: str) -> None:
    # Headers reach the server as str; a non-ASCII one must be a 401, not an exception
    # from encode("ascii") or hmac.compare_digest.
    expect(Unauthorized, "token is malformed", token)


def test_require_role() -> None:
    host = Claims("sp1", Role.HOST, 10.0, "id")
    speaker = Claims("sp1", Role.SPEAKER, 10.0, "id")
    require_role(host, "sp1", Role.HOST)
    require_role(speaker, "sp1", Role.HOST, Role.SPEAKER)
    with pytest.raises(Forbidden) as exc:
        require_role(host, "sp2", Role.HOST)
    assert exc.value.message == "token is for another space"
    with pytest.raises(Forbidden) as exc:
        require_role(speaker, "sp1", Role.HOST)
    assert exc.value.message == "this action needs a host token, not speaker"
    with pytest.raises(Forbidden) as exc:
        require_role(Claims("sp1", Role.SPEAKER, 10.0, "id"), "sp2", Role.SPEAKER)
    assert exc.value.message == "token is for another space", "space is checked first"
    assert exc.value.status == 403


def test_require_role_names_every_allowed_role() -> None:
    with pytest.raises(Forbidden) as exc:
        require_role(Claims("sp1", Role.SPEAKER, 10.0, "id"), "sp1", Role.HOST, Role.HOST)
    assert exc.value.message == "this action needs a host or host token, not speaker"


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def", "abc.def"), ("bearer abc", "abc"), ("BEARER  abc  ", "abc")],
)
def test_bearer_header(header: str, token: str) -> None:
    assert bearer(header) == token


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing Authorization: Bearer token"),
        ("", "missing Authorization: Bearer token"),
        ("Basic dXNlcjpwYXNz", "Authorization header must be 'Bearer <token>'"),
        ("Bearer", "Authorization header must be 'Bearer <token>'"),
        ("Bearer    ", "Authorization header must be 'Bearer <token>'"),
        ("abc.def", "Authorization header must be 'Bearer <token>'"),
    ],
)
def test_bearer_header_errors(header: str | None, message: str) -> None:
    with pytest.raises(Unauthorized) as exc:
        bearer(header)
    assert exc.value.message == message
    assert exc.value.status == 401
