"""The copy of each space kept in Redis: its record and stage, and every announced segment.

The owner pushes; any node can rebuild the space from it (`fetch`), to take over a live
space whose owner died or to serve a replay. Pushes are queued, so a Redis outage never
stalls the live pipeline; while Redis is up a segment is stored before the playlist
announces it, which is what lets a takeover lose no announced segment.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from redis.asyncio import Redis

from majlis.cluster import keys
from majlis.cluster.link import BULK_TIMEOUT_S, RedisLink, StoreDown, as_bytes
from majlis.packaging.playlist import SegmentEntry
from majlis.storage.database import Database, SpaceRow, StageRows

log = logging.getLogger(__name__)

# How long a new segment waits for Redis before the playlist announces it anyway: far above a
# healthy round trip, far below a part, so an outage costs the live edge nothing visible.
SEGMENT_WAIT_S = 0.15
# Pushes kept while Redis is down (about 2.5 hours of one space at 48 kbit/s); older
# segments beyond it are dropped from the copy, never from the node's own recording.
MAX_BACKLOG_BYTES = 64 * 1024 * 1024
RETRY_S = 0.5


@dataclass(frozen=True, slots=True)
class Snapshot:
    row: SpaceRow
    stage: StageRows
    consents: list[tuple[str, str, str, float]]

    def encode(self) -> bytes:
        return json.dumps(
            {"row": asdict(self.row), "stage": asdict(self.stage), "consents": self.consents}
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Snapshot:
        data = json.loads(raw)
        stage = data["stage"]
        return cls(
            SpaceRow(**data["row"]),
            StageRows(
                members=[tuple(m) for m in stage["members"]],
                hands=[tuple(h) for h in stage["hands"]],
                invitations=[tuple(i) for i in stage["invitations"]],
                banned=list(stage["banned"]),
                revoked=list(stage["revoked"]),
            ),
            [(str(a), str(b), str(c), float(d)) for a, b, c, d in data["consents"]],
        )


def encode_entry(entry: SegmentEntry) -> bytes:
    return json.dumps(
        {
            "msn": entry.msn,
            "duration": entry.duration,
            "started_at": entry.started_at,
            "discontinuity": entry.discontinuity,
        }
    ).encode()


def decode_entry(raw: bytes) -> SegmentEntry:
    data = json.loads(raw)
    return SegmentEntry(
        msn=int(data["msn"]),
        duration=float(data["duration"]),
        started_at=float(data["started_at"]),
        discontinuity=bool(data["discontinuity"]),
    )


@dataclass(slots=True)
class Bundle:
    """Everything needed to run or replay a space on another node."""

    snapshot: Snapshot
    init: bytes | None
    entries: list[SegmentEntry]
    segments: dict[int, bytes]
    sealed: bytes | None


async def fetch(link: RedisLink, space_id: str) -> Bundle | None:
    """The space as Redis holds it, or None if Redis does not know it."""

    async def op(r: Redis) -> tuple[Any, ...]:
        async with r.pipeline(transaction=True) as p:
            p.get(keys.space(space_id))
            p.get(keys.init(space_id))
            p.lrange(keys.index(space_id), 0, -1)
            p.hgetall(keys.segments(space_id))
            p.get(keys.sealed(space_id))
            return tuple(await p.execute())

    raw, init, index, stored, sealed = await link.call(op, BULK_TIMEOUT_S)
    if raw is None:
        return None
    segments = {int(msn): data for msn, data in stored.items()}
    entries: list[SegmentEntry] = []
    seen: set[int] = set()
    for line in index:
        entry = decode_entry(line)
        # A push retried after a lost reply appends its entry twice: the first one counts.
        if entry.msn not in seen and entry.msn in segments:
            seen.add(entry.msn)
            entries.append(entry)
    return Bundle(Snapshot.decode(raw), init, entries, segments, sealed)


async def load_snapshots(link: RedisLink, limit: int = 500) -> list[Snapshot]:
    """The newest spaces of the whole cluster, newest first."""

    async def op(r: Redis) -> list[bytes | None]:
        ids = [as_bytes(i) for i in await r.zrevrange(keys.SPACES, 0, limit - 1)]
        if not ids:
            return []
        values = await r.mget([keys.space(i.decode()) for i in ids if i is not None])
        return [as_bytes(v) for v in values]

    return [Snapshot.decode(raw) for raw in await link.call(op) if raw is not None]


# Every write of a space's copy is fenced (leases.py): it happens only if no other node holds
# the space's lease and, when the writer claimed the space under an epoch, that epoch is still
# the space's. KEYS[1] owner, KEYS[2] epoch; ARGV[1] this node ('' = not fenced), ARGV[2] the
# epoch ('' = none claimed: a copy of an ended space made for its replay).
_GUARD = """
if ARGV[1] ~= '' then
  local owner = redis.call('GET', KEYS[1])
  if owner ~= false and owner ~= ARGV[1] then
    return 0
  end
  if ARGV[2] ~= '' and tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then
    return 0
  end
end
"""
PUT_VALUE = _GUARD + "redis.call('SET', KEYS[3], ARGV[3])\nreturn 1\n"
PUT_SEGMENT = (
    _GUARD + "redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])\n"
    "redis.call('RPUSH', KEYS[4], ARGV[5])\nreturn 1\n"
)
PUT_SNAPSHOT = (
    _GUARD
    + """
redis.call('SET', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
if ARGV[6] == 'ended' then
  redis.call('SREM', KEYS[5], ARGV[5])
else
  redis.call('SADD', KEYS[5], ARGV[5])
end
return 1
"""
)


@dataclass(slots=True)
class _Push:
    key: str
    space_id: str
    payload: bytes
    entry: SegmentEntry | None = None
    done: asyncio.Future[None] | None = None
    # The epoch the space was held under when this was made, not when Redis takes it.
    epoch: int | None = None
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.payload)


class Replicator:
    """Pushes this node's changes to Redis in order, retrying while Redis is away.

    With a ``node`` id the pushes are fenced: ``epochs`` holds the epoch under which this node
    claimed each space it runs, and a push made under an older epoch than Redis's (another
    node took the space over meanwhile) is dropped and counted in ``fenced``.
    """

    def __init__(self, link: RedisLink, db: Database, node: str = "") -> None:
        self.link = link
        self.db = db
        self.node = node
        self.epochs: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._pushes: deque[_Push] = deque()
        self._backlog = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.fenced = 0
        self._fenced_spaces: set[str] = set()

    @property
    def pending(self) -> int:
        return len(self._dirty) + len(self._pushes)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="majlis-replicator")

    async def stop(self) -> None:
        """Push what is queued if Redis answers (a clean shutdown loses nothing)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self._flush()
        except StoreDown:
            log.warning("stopping with %d changes not pushed to redis", self.pending)

    def space_changed(self, space_id: str) -> None:
        self._dirty.add(space_id)
        self._wake.set()

    def init(self, space_id: str, data: bytes) -> None:
        self._queue(_Push(keys.init(space_id), space_id, data, epoch=self.epochs.get(space_id)))

    def sealed(self, space_id: str, data: bytes) -> None:
        self._queue(_Push(keys.sealed(space_id), space_id, data, epoch=self.epochs.get(space_id)))

    async def segment(self, space_id: str, entry: SegmentEntry, data: bytes) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        epoch = self.epochs.get(space_id)
        self._queue(_Push(keys.segments(space_id), space_id, data, entry, done, epoch))
        if not self.link.up:
            return
        try:
            await asyncio.wait_for(asyncio.shield(done), SEGMENT_WAIT_S)
        except TimeoutError:
            log.warning("segment %d of %s announced before redis stored it", entry.msn, space_id)

    def _queue(self, push: _Push) -> None:
        self._pushes.append(push)
        self._backlog += push.size
        while self._backlog > MAX_BACKLOG_BYTES and len(self._pushes) > 1:
            old = self._pushes.popleft()
            self._backlog -= old.size
            self.dropped += 1
            if old.done is not None and not old.done.done():
                old.done.set_result(None)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except StoreDown:
                await asyncio.sleep(RETRY_S)
                self._wake.set()
            except Exception:  # a bug here must not stop replication for good
                log.exception("replication failed; retrying")
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def flush(self) -> None:
        """Push everything queued now; raises StoreDown if Redis is away."""
        await self._flush()

    async def _flush(self) -> None:
        while self._dirty:
            space_id = next(iter(self._dirty))
            snapshot = await self._snapshot(space_id)
            if snapshot is not None:
                fence = self._fence(space_id, self.epochs.get(space_id))
                put = partial(_put_snapshot, snapshot=snapshot, fence=fence)
                self._count(space_id, "its record", await self.link.call(put))
            self._dirty.discard(space_id)
        while self._pushes:
            push = self._pushes[0]
            put = partial(_put, push=push, fence=self._fence(push.space_id, push.epoch))
            self._count(push.space_id, push.key, await self.link.call(put))
            self._pushes.popleft()
            self._backlog -= push.size
            if push.done is not None and not push.done.done():
                push.done.set_result(None)

    def _fence(self, space_id: str, epoch: int | None) -> list[str]:
        return [keys.owner(space_id), keys.epoch(space_id), self.node, _or_empty(epoch)]

    def _count(self, space_id: str, what: str, written: int) -> None:
        if written:
            return
        self.fenced += 1
        if space_id not in self._fenced_spaces:  # once per space: every queued push follows
            self._fenced_spaces.add(space_id)
            log.warning("not writing %s of space %s: another node took it over", what, space_id)

    async def _snapshot(self, space_id: str) -> Snapshot | None:
        row = await self.db.space(space_id)
        if row is None:
            return None
        return Snapshot(row, await self.db.stage(space_id), await self.db.consents(space_id))


def _or_empty(epoch: int | None) -> str:
    return "" if epoch is None else str(epoch)


async def _put_snapshot(r: Redis, snapshot: Snapshot, fence: list[str]) -> int:
    row = snapshot.row
    owner, epoch, node, claimed = fence
    written = await r.eval(
        PUT_SNAPSHOT, 5, owner, epoch, keys.space(row.id), keys.SPACES, keys.ACTIVE,
        node, claimed, snapshot.encode(), repr(row.created_at), row.id, row.status,
    )  # fmt: skip
    return int(written)


async def _put(r: Redis, push: _Push, fence: list[str]) -> int:
    owner, epoch, node, claimed = fence
    if push.entry is None:
        written = await r.eval(PUT_VALUE, 3, owner, epoch, push.key, node, claimed, push.payload)
    else:
        written = await r.eval(
            PUT_SEGMENT, 4, owner, epoch, push.key, keys.index(push.space_id),
            node, claimed, str(push.entry.msn), push.payload, encode_entry(push.entry),
        )  # fmt: skip
    return int(written)
