"""Listener session ids that carry their own proof: sealed under the audience secret, so the
node that runs a space after a takeover, or after a restart, can recognise a session it never
saw start and let it go on under the same id (docs/metrics.md), instead of counting one
listener twice. A made-up id is still refused.

An id is 33 URL-safe characters: 16 of randomness, one for the mode (`l` live, `r` replay),
and the 16-character seal of the space id, the randomness and the mode.
"""

from __future__ import annotations

import secrets

from majlis.admission.seal import b64, seal, sealed_by
from majlis.trust.audience import Mode

_NONCE_BYTES = 12  # 16 characters
LENGTH = 16 + 1 + 16
_MODES = {"l": Mode.LIVE, "r": Mode.REPLAY}
_TAGS = {mode: tag for tag, mode in _MODES.items()}
_PURPOSE = "majlis-listener-session"


def issue(key: bytes, space_id: str, mode: Mode) -> str:
    nonce = b64(secrets.token_bytes(_NONCE_BYTES))
    tag = _TAGS[mode]
    return nonce + tag + seal(key, _PURPOSE, space_id, nonce, tag)


def recognise(key: bytes, space_id: str, session: str) -> Mode | None:
    """The mode a session of this space was issued with, or None if it was not issued here
    (by this server, or by any node of its cluster)."""
    if len(session) != LENGTH:
        return None
    nonce, tag, mac = session[:16], session[16], session[17:]
    mode = _MODES.get(tag)
    if mode is None or not sealed_by(key, mac, _PURPOSE, space_id, nonce, tag):
        return None
    return mode
