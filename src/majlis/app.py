"""The one application object: settings, clock, storage and spaces, started and stopped together."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from majlis.clock import Clock, SystemClock
from majlis.cluster import secrets as shared
from majlis.cluster.link import RedisLink
from majlis.cluster.node import Cluster, node_id
from majlis.config import Settings
from majlis.ingest.ice import configure_ice
from majlis.rooms.registry import SpaceRegistry
from majlis.rooms.tokens import TokenSigner
from majlis.storage.database import Database
from majlis.trust.keys import KEY_FILE, load_or_create

log = logging.getLogger(__name__)


def _secret_file(path: Path, make: bytes) -> bytes:
    """Read a secret kept in the data folder, creating it (mode 0600) on first start."""
    if path.exists():
        return path.read_bytes().strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(make)
    return make


class App:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.data = settings.data_dir.resolve()
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "spaces").mkdir(exist_ok=True)
        admin = _secret_file(self.data / "admin_token", secrets.token_urlsafe(24).encode())
        self.admin_token = settings.admin_token or admin.decode()
        secret = _secret_file(self.data / "token_secret", secrets.token_hex(32).encode())
        self.signer = TokenSigner(secret)
        self.db = Database(self.data / "majlis.sqlite3")
        self.signing_key = load_or_create(self.data / KEY_FILE)
        self.spaces = SpaceRegistry(
            settings, self.clock, self.db, self.signer, self.data, signing_key=self.signing_key
        )
        # Set when nodes share a Redis (`--redis`): see majlis.cluster.
        self.cluster: Cluster | None = None
        self.audience_salt: bytes | None = None

    async def start(self) -> None:
        configure_ice(self.settings.ice_addresses, self.settings.ice_port_range)
        if self.settings.redis_url:
            await self._share_secrets(RedisLink(self.settings.redis_url, self.clock))
        await self.db.open()
        await self.spaces.restore()

    async def _share_secrets(self, link: RedisLink) -> None:
        """Every node honours every node's tokens and signs with the same key."""
        found = await shared.fetch(link, self.signing_key)
        self.signer = self.spaces.signer = TokenSigner(found.token_secret)
        self.signing_key = self.spaces.signing_key = found.signing_key
        if not self.settings.admin_token:
            self.admin_token = found.admin_token
        self.audience_salt = found.audience_salt
        self.cluster = Cluster(link, self.spaces, node_id(self.data))

    async def join_cluster(self, url: str) -> None:
        """Once this node answers at `url`: take up its leases and start its upkeep."""
        if self.cluster is not None:
            await self.cluster.start(self.settings.node_url or url)

    async def stop(self) -> None:
        await self.spaces.shutdown()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.db.close()
