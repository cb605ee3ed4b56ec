"""Short HMAC seals for stateless tokens (challenges, waiting-room tickets) and their key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

# 96 bits of HMAC-SHA256: forging one seal takes 2^96 guesses, and the token stays short
# enough that a challenge plus its nonce fits in one SHA-256 block (pow.js hashes it).
SEAL_BYTES = 12


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seal(secret: bytes, *fields: str) -> str:
    """The seal of ``fields``; ``|`` cannot occur inside a field of ours, so joins are unique."""
    message = "|".join(fields).encode()
    return b64(hmac.new(secret, message, hashlib.sha256).digest()[:SEAL_BYTES])


def sealed_by(secret: bytes, mac: str, *fields: str) -> bool:
    return hmac.compare_digest(seal(secret, *fields).encode(), mac.encode("ascii", "replace"))


def load_secret(path: Path) -> bytes:
    """The node's admission key, kept in the data folder (0600) so tickets survive a restart."""
    if path.exists():
        return path.read_bytes()
    made = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(made)
    return made
