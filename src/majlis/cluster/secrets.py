"""Secrets every node must share: the token key, the admin token and the signing key.

The first node to start makes each one (SET NX); the others read it. A token issued by one
node is then honoured by all, and every node signs replays with the same key, so one public
key verifies a replay whichever node ended the space.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from majlis.cluster import keys
from majlis.cluster.link import RedisLink, StoreDown, as_bytes
from majlis.trust.keys import SigningKey

# A node started before Redis waits this long for it, then gives up with a clear message.
STARTUP_WAIT_S = float(os.environ.get("MAJLIS_REDIS_WAIT_S", "20"))


@dataclass(frozen=True, slots=True)
class SharedSecrets:
    token_secret: bytes
    admin_token: str
    signing_key: SigningKey
    audience_salt: bytes


async def _shared(link: RedisLink, key: str, make: bytes) -> bytes:
    async def op(r: Redis) -> bytes | None:
        await r.set(key, make, nx=True)
        return as_bytes(await r.get(key))

    value = await link.call(op)
    if not value:
        raise StoreDown(f"{key} vanished right after it was set")
    return value


async def fetch(link: RedisLink, local_signing_key: SigningKey) -> SharedSecrets:
    """The cluster's secrets; this node's own signing key becomes the cluster's if it is
    the first, so a node that joins a cluster keeps verifying its earlier replays."""
    deadline = link.clock.monotonic() + STARTUP_WAIT_S
    while True:
        try:
            token = await _shared(link, keys.SECRET_TOKEN, secrets.token_hex(32).encode())
            admin = await _shared(link, keys.SECRET_ADMIN, secrets.token_urlsafe(24).encode())
            pem = await _shared(link, keys.SECRET_SIGNING, local_signing_key.pem())
            salt = await _shared(link, keys.SECRET_SALT, secrets.token_hex(32).encode())
            return SharedSecrets(token, admin.decode(), SigningKey.from_pem(pem), salt)
        except StoreDown:
            if link.clock.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
