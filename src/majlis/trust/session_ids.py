"""Listener session ids that carry their own proof: issued with a MAC under the audience
secret, so the node that runs a space after a takeover, or after a restart, can recognise a
session it never saw start and let it go on under the same id (docs/metrics.md), instead of
counting one listener twice. A made-up id is still refused.

An id is 29 URL-safe characters: 16 of randomness, one for the mode (`l` live, `r` replay),
12 of HMAC-SHA256 over the space id, the randomness and the mode.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from majlis.trust.audience import Mode

_NONCE_BYTES = 12  # 16 characters
_MAC_BYTES = 9  # 12 characters
LENGTH = 16 + 1 + 12
_MODES = {"l": Mode.LIVE, "r": Mode.REPLAY}
_TAGS = {mode: tag for tag, mode in _MODES.items()}


def issue(key: bytes, space_id: str, mode: Mode) -> str:
    nonce = _b64(secrets.token_bytes(_NONCE_BYTES))
    tag = _TAGS[mode]
    return nonce + tag + _mac(key, space_id, nonce, tag)


def recognise(key: bytes, space_id: str, session: str) -> Mode | None:
    """The mode a session of this space was issued with, or None if it was not issued here
    (by this server, or by any node of its cluster)."""
    if len(session) != LENGTH:
        return None
    nonce, tag, mac = session[:16], session[16], session[17:]
    mode = _MODES.get(tag)
    if mode is None or not hmac.compare_digest(mac, _mac(key, space_id, nonce, tag)):
        return None
    return mode


def _mac(key: bytes, space_id: str, nonce: str, tag: str) -> str:
    message = f"majlis-listener-session|{space_id}|{nonce}|{tag}".encode()
    return _b64(hmac.new(key, message, hashlib.sha256).digest()[:_MAC_BYTES])


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
