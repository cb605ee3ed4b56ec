"""Proof of work for attack mode: stateless HMAC-sealed challenges, single-use passes.

A challenge is ``difficulty.expires.salt.seal``, sealed together with the client's address
key, so it is only good from that address and until it expires. The client finds a nonce
such that SHA-256(challenge ‖ nonce) starts with ``difficulty`` zero bits (2^difficulty
hashes on average) and sends both back. Checking costs one HMAC and one SHA-256; the only
state is the set of passes already used, each kept until its challenge expires.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from majlis.admission.seal import b64, seal, sealed_by

# Long enough to solve on a slow phone and send; short enough that used passes are few.
CHALLENGE_LIFETIME_S = 120
MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 32
# 2^16 = 65,536 hashes on average: tens of milliseconds in the page's JS on a laptop,
# well under a second on a phone (measured in tests/e2e/test_admission.py).
DEFAULT_DIFFICULTY = 16
MAX_NONCE_CHARS = 16
# Used passes remembered at once; each cost its sender 2^difficulty hashes.
MAX_USED = 500_000


class PowRefused(Exception):
    """A pass that does not admit; the message says why, for the client's detail."""


@dataclass(frozen=True, slots=True)
class Challenge:
    token: str
    difficulty: int
    expires: int

    def to_json(self) -> dict[str, object]:
        return {
            "challenge": self.token,
            "difficulty": self.difficulty,
            "expires": self.expires,
            "algorithm": "sha256-leading-zero-bits",
        }


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def solve(token: str, difficulty: int) -> str:
    """The smallest decimal nonce that solves ``token`` (what pow.js does, for tests)."""
    prefix = token.encode()
    n = 0
    while leading_zero_bits(hashlib.sha256(prefix + str(n).encode()).digest()) < difficulty:
        n += 1
    return str(n)


def _nonce_ok(nonce: str) -> bool:
    return 0 < len(nonce) <= MAX_NONCE_CHARS and nonce.isascii() and nonce.isalnum()


class ProofOfWork:
    def __init__(self, secret: bytes, lifetime_s: int = CHALLENGE_LIFETIME_S) -> None:
        self._secret = secret
        self.lifetime_s = lifetime_s
        self._used: OrderedDict[str, int] = OrderedDict()

    def issue(self, client: str, difficulty: int, now: float) -> Challenge:
        if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
            raise ValueError(f"difficulty must be {MIN_DIFFICULTY}-{MAX_DIFFICULTY} bits")
        expires = int(now) + self.lifetime_s
        salt = b64(secrets.token_bytes(6))
        mac = seal(self._secret, "pow", str(difficulty), str(expires), salt, client)
        return Challenge(f"{difficulty}.{expires}.{salt}.{mac}", difficulty, expires)

    def verify(self, token: str, nonce: str, client: str, now: float) -> int:
        """Accept a solved challenge once; returns its difficulty or raises PowRefused."""
        parts = token.split(".")
        if len(parts) != 4 or not all(p.isascii() for p in parts):
            raise PowRefused("the challenge is malformed")
        difficulty_s, expires_s, salt, mac = parts
        if not sealed_by(self._secret, mac, "pow", difficulty_s, expires_s, salt, client):
            raise PowRefused("the challenge was not issued to this address by this server")
        difficulty, expires = int(difficulty_s), int(expires_s)
        if now >= expires:
            raise PowRefused("the challenge has expired")
        if not _nonce_ok(nonce):
            raise PowRefused(f"the nonce must be 1-{MAX_NONCE_CHARS} letters or digits")
        digest = hashlib.sha256(token.encode() + nonce.encode()).digest()
        if leading_zero_bits(digest) < difficulty:
            raise PowRefused("the nonce does not solve the challenge")
        self._forget(now)
        if token in self._used:
            raise PowRefused("this challenge was already used")
        if len(self._used) >= MAX_USED:
            raise PowRefused("too many passes in flight: solve a new challenge")
        self._used[token] = expires
        return difficulty

    def _forget(self, now: float) -> None:
        # Challenges expire in issue order (fixed lifetime), so used ones mostly do too.
        while self._used:
            token, expires = next(iter(self._used.items()))
            if expires > now:
                break
            del self._used[token]
