"""This node in a cluster: its leases, its watch for orphaned spaces, and where a request
for a space must go (here, or to the node that owns the space)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from majlis.cluster import keys, leases, ratesync
from majlis.cluster.link import RedisLink, StoreDown, as_bytes
from majlis.cluster.replica import Bundle, Replicator, fetch
from majlis.errors import Unavailable
from majlis.guard.shared import SharedBudget
from majlis.rooms.registry import SpaceRegistry
from majlis.rooms.space import Status

log = logging.getLogger(__name__)

WATCH_S = 1.0
# Checks in a row that must find a live space without an owner before adopting it: one
# missing read is not enough to start a second pipeline.
ORPHAN_CHECKS = 2
OWNER_CACHE_S = 1.0
RATE_SYNC_S = 1.0
MODES = ("live", "replay")
# Listeners waiting to be counted while Redis is away; the oldest half goes past this.
MAX_PENDING_UNIQUES = 100_000


def node_id(data: Path) -> str:
    """A node keeps its id across restarts, so it can renew the leases it held."""
    path = data / "node_id"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    made = "n-" + secrets.token_hex(6)
    path.write_text(made + "\n", encoding="utf-8")
    return made


@dataclass(frozen=True, slots=True)
class Remote:
    """The space runs on another node, reachable at `url`."""

    node: str
    url: str


class Cluster:
    def __init__(self, link: RedisLink, registry: SpaceRegistry, node: str) -> None:
        self.link = link
        self.registry = registry
        self.node = node
        self.url = ""
        self.replicator = Replicator(link, registry.db, node)
        self.owned: set[str] = set()
        self._orphans: dict[str, int] = {}
        self._owners: dict[str, tuple[Remote | None, float]] = {}
        self._adopting: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.adopted = 0
        self.evicted = 0
        # Per-address request budgets summed over the nodes (set by the HTTP layer).
        self.budgets: dict[str, SharedBudget] = {}
        self._uniques: list[tuple[str, str, str]] = []

    # -- start and stop --------------------------------------------------------------------

    async def start(self, url: str) -> None:
        """Claim the restored spaces this node still owns and let go of the others."""
        self.url = url
        self.registry.sink = self.replicator
        self.registry.db.changed = self.replicator.space_changed
        mine = [s.id for s in self.registry.all() if s.status != Status.ENDED]
        held = await self.link.call(lambda r: leases.claim_epochs(r, self.node, mine))
        self.replicator.epochs.update(held)
        for space_id in sorted(set(mine) - set(held)):
            log.warning("space %s is run by another node now; not serving it here", space_id)
            await self.registry.evict(space_id)
        for space in self.registry.all():
            space.pipeline.sink = self.replicator
            if space.status != Status.ENDED:
                self.owned.add(space.id)
                self.replicator.space_changed(space.id)
        await self._beat_once()
        self.replicator.start()
        self._tasks = [
            asyncio.create_task(self._loop(self._beat_once, leases.RENEW_S), name="majlis-beat"),
            asyncio.create_task(self._loop(self._watch_once, WATCH_S), name="majlis-watch"),
            asyncio.create_task(self._loop(self._sync_rates, RATE_SYNC_S), name="majlis-rates"),
        ]

    async def stop(self) -> None:
        """After the pipelines closed their last segments: push them, then free the leases
        so another node can take the spaces over at once."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.replicator.stop()
        with contextlib.suppress(StoreDown):
            await self.link.call(lambda r: leases.release(r, self.node, sorted(self.owned)))
            await self.link.call(lambda r: r.delete(keys.node(self.node)))
        await self.link.close()

    async def _loop(self, step: Callable[[], Awaitable[None]], period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await step()
            except StoreDown:
                pass  # the link has marked itself down; live spaces go on
            except Exception:
                log.exception("cluster upkeep failed")

    async def _sync_rates(self) -> None:
        await self._push_uniques()
        await ratesync.sync(self.link, self.budgets, self.link.clock.wall())

    # -- leases ----------------------------------------------------------------------------

    async def _beat_once(self) -> None:
        ttl = int(leases.LEASE_S * 3000)
        await self.link.call(lambda r: r.set(keys.node(self.node), self.url, px=ttl))
        done = [s for s in self.owned if self._finished(s)]
        if done and self.replicator.pending == 0:
            await self.link.call(lambda r: leases.release(r, self.node, done))
            self.owned.difference_update(done)
            for space_id in done:
                self.replicator.epochs.pop(space_id, None)
        epochs = self.replicator.epochs
        renew = {s: epochs.get(s, 0) for s in self.owned - set(done)}
        lost = await self.link.call(lambda r: leases.renew(r, self.node, renew))
        for space_id in lost:
            # Another node took it while this one could not renew (Redis was away from here
            # but not from there): two pipelines must not run, and theirs is the one in use.
            # Its epoch stays behind, so what this node still has queued is never written.
            log.warning("lost the lease of space %s; stopping its pipeline here", space_id)
            self.owned.discard(space_id)
            self.evicted += 1
            await self.registry.evict(space_id)

    def _finished(self, space_id: str) -> bool:
        space = self.registry.peek(space_id)
        return space is None or space.status == Status.ENDED

    async def created(self, space_id: str) -> None:
        """A space made here is owned here from its first moment, and known to the others
        before the client hears of it."""
        held = await self.link.call(lambda r: leases.claim_epochs(r, self.node, [space_id]))
        self.replicator.epochs[space_id] = held.get(space_id, 0)
        self.owned.add(space_id)
        self.replicator.space_changed(space_id)
        await self.replicator.flush()

    def require_store(self) -> None:
        """New work needs Redis: a space made now could not be found by the other nodes."""
        if not self.link.up:
            raise StoreDown(self.link.last_error)

    # -- audience --------------------------------------------------------------------------

    def count_listener(self, space_id: str, mode: str, session: str) -> None:
        """PFADD, off the request: a session is counted once Redis answers."""
        self._uniques.append((space_id, mode, session))
        if len(self._uniques) > MAX_PENDING_UNIQUES:
            del self._uniques[: len(self._uniques) // 2]

    async def unique_listeners(self, space_id: str) -> dict[str, int]:
        async def count(r: Redis) -> list[int]:
            async with r.pipeline(transaction=False) as p:
                for mode in MODES:
                    p.pfcount(keys.uniques(space_id, mode))
                return [int(n) for n in await p.execute()]

        return dict(zip(MODES, await self.link.call(count), strict=True))

    async def _push_uniques(self) -> None:
        batch, self._uniques = self._uniques, []
        if not batch:
            return

        async def add(r: Redis) -> None:
            async with r.pipeline(transaction=False) as p:
                for space_id, mode, client in batch:
                    p.pfadd(keys.uniques(space_id, mode), client)
                await p.execute()

        try:
            await self.link.call(add)
        except StoreDown:
            self._uniques[:0] = batch  # kept for when Redis returns
            raise

    # -- adopting orphaned spaces ----------------------------------------------------------

    def _settled(self) -> bool:
        # Right after Redis comes back every lease may have expired meanwhile: owners renew
        # within a second, so wait a lease before calling any space an orphan.
        return self.link.up_for() >= leases.LEASE_S + leases.RENEW_S

    async def _watch_once(self) -> None:
        if not self._settled():
            self._orphans.clear()
            return

        async def scan(r: Redis) -> list[str]:
            members = [as_bytes(m) for m in await r.smembers(keys.ACTIVE)]
            active = sorted(m.decode() for m in members if m is not None)
            others = [s for s in active if s not in self.owned]
            if not others:
                return []
            held = await r.mget([keys.owner(s) for s in others])
            return [s for s, h in zip(others, held, strict=True) if h is None]

        orphans = await self.link.call(scan)
        self._orphans = {s: self._orphans.get(s, 0) + 1 for s in orphans}
        for space_id, seen in list(self._orphans.items()):
            if seen >= ORPHAN_CHECKS:
                await self.adopt(space_id)

    async def adopt(self, space_id: str) -> bool:
        """Take the space's lease and rebuild it here from Redis; False if another node has
        it (or Redis does not know it)."""
        lock = self._adopting.setdefault(space_id, asyncio.Lock())
        async with lock:
            if space_id in self.owned:
                return True
            held = await self.link.call(
                lambda r: leases.claim_epochs(r, self.node, [space_id], takeover=True)
            )
            if space_id not in held:
                return False
            bundle = await fetch(self.link, space_id)
            if bundle is None or bundle.snapshot.row.status == Status.ENDED:
                await self.link.call(lambda r: leases.release(r, self.node, [space_id]))
                return False
            self.replicator.epochs[space_id] = held[space_id]
            await self._rebuild(bundle)
            self.owned.add(space_id)
            self._orphans.pop(space_id, None)
            self._owners.pop(space_id, None)
            self.adopted += 1
            log.warning("adopted space %s with %d recorded segments", space_id, len(bundle.entries))
            return True

    async def _rebuild(self, bundle: Bundle) -> None:
        snap = bundle.snapshot
        space = await self.registry.adopt(
            snap.row,
            snap.stage,
            snap.consents,
            (bundle.init, bundle.entries, bundle.segments, bundle.sealed),
        )
        space.pipeline.sink = self.replicator

    async def _replay(self, space_id: str) -> bool:
        """Copy an ended space here to serve its replay; False if it is not complete yet."""
        lock = self._adopting.setdefault(space_id, asyncio.Lock())
        async with lock:
            if self.registry.peek(space_id) is not None:
                return True
            bundle = await fetch(self.link, space_id)
            if bundle is None:
                return False
            if bundle.init is not None and bundle.sealed is None:
                return False  # its last segment and signature are still on their way
            await self._rebuild(bundle)
            return True

    # -- routing ---------------------------------------------------------------------------

    async def route(self, space_id: str) -> Remote | None:
        """None: serve it here. Remote: forward to the owner. Raises Unavailable when
        nobody can serve it right now."""
        if space_id in self.owned:
            return None
        local = self.registry.peek(space_id)
        if local is not None and local.status == Status.ENDED:
            return None
        now = self.link.clock.monotonic()
        cached = self._owners.get(space_id)
        if cached is not None and cached[0] is not None and cached[1] > now:
            return cached[0]
        try:
            return await self._lookup(space_id, now)
        except StoreDown:
            if cached is not None and cached[0] is not None:
                return cached[0]  # stale, but the best guess while Redis is away
            raise

    async def _lookup(self, space_id: str, now: float) -> Remote | None:
        async def read(r: Redis) -> tuple[bytes | None, bytes | None, int]:
            owner, raw = (
                as_bytes(v) for v in await r.mget([keys.owner(space_id), keys.space(space_id)])
            )
            url = as_bytes(await r.get(keys.node(owner.decode()))) if owner else None
            return owner, url, 0 if raw is None else 1

        owner, url, known = await self.link.call(read)
        if owner is not None:
            if owner.decode() == self.node:
                # This node took the lease and is still rebuilding the space (writing its
                # recording to disk): answer once it can, never a 404 meanwhile.
                adopting = self._adopting.get(space_id)
                if adopting is not None and adopting.locked() and space_id not in self.owned:
                    async with adopting:
                        pass
                    if space_id not in self.owned:
                        raise Unavailable("this space is moving to another node", 1)
                return None
            if url is None:
                raise Unavailable("the node that runs this space is not answering", 1)
            remote = Remote(owner.decode(), url.decode())
            self._owners[space_id] = (remote, now + OWNER_CACHE_S)
            return remote
        if not known:
            return None  # not a cluster space: the handler answers 404 (or serves it)
        active = await self.link.call(lambda r: r.sismember(keys.ACTIVE, space_id))
        if not active:
            if await self._replay(space_id):
                return None
            raise Unavailable("this space has just ended; its replay is on its way", 1)
        if self._settled() and await self.adopt(space_id):
            return None
        raise Unavailable("this space is moving to another node", 1)

    def forget(self, space_id: str) -> None:
        """The owner did not answer: look it up again next time."""
        self._owners.pop(space_id, None)
