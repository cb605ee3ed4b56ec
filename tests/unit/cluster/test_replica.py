from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from majlis.cluster import keys, leases
from majlis.cluster.link import RedisLink
from majlis.cluster.replica import Replicator, Snapshot, encode_entry, fetch, load_snapshots
from majlis.packaging.playlist import SegmentEntry
from majlis.storage.database import Database, SpaceRow, StageRows
from tests.support.redis import RunningRedis

ROW = SpaceRow("sp1", "Majlis", "live", 100.0, 101.0, None, "desc", "ar", None)
STAGE = StageRows(
    members=[("u1", "speaker", "Amal", 102.0, 0, 1, "t1")],
    hands=[("u2", "Badr", 103.0)],
    invitations=[],
    banned=["u9"],
    revoked=["t7"],
)


def test_a_snapshot_reads_back_as_written() -> None:
    snap = Snapshot(ROW, STAGE, [("u1", "Amal", "this space is recorded", 102.5)])
    assert Snapshot.decode(snap.encode()) == snap


async def test_what_the_owner_pushes_another_node_rebuilds(link: RedisLink, tmp_path: Path) -> None:
    db = Database(tmp_path / "a.sqlite3")
    await db.open()
    replicator = Replicator(link, db)
    db.changed = replicator.space_changed
    replicator.start()
    await db.insert_space(ROW)
    await db.save_stage(ROW.id, STAGE, 102.0)
    await db.add_consent(ROW.id, "u1", "Amal", "this space is recorded", 102.5)
    replicator.init(ROW.id, b"init")
    for msn in range(3):
        entry = SegmentEntry(msn, 1.0, 200.0 + msn, discontinuity=msn == 2)
        await replicator.segment(ROW.id, entry, f"segment {msn}".encode())
    await replicator.stop()
    await db.close()

    bundle = await fetch(link, ROW.id)
    assert bundle is not None
    assert bundle.snapshot.row == ROW
    assert bundle.snapshot.stage.members == STAGE.members
    assert bundle.snapshot.stage.banned == ["u9"] and bundle.snapshot.stage.revoked == ["t7"]
    assert bundle.snapshot.consents == [("u1", "Amal", "this space is recorded", 102.5)]
    assert bundle.init == b"init"
    assert [e.msn for e in bundle.entries] == [0, 1, 2]
    assert bundle.entries[2].discontinuity
    assert bundle.segments[1] == b"segment 1"
    assert await link.call(lambda r: r.sismember(keys.ACTIVE, ROW.id))
    assert [s.row.id for s in await load_snapshots(link)] == [ROW.id]

    # An imported copy replaces what a database held of the space.
    other = Database(tmp_path / "b.sqlite3")
    await other.open()
    await other.import_space(ROW, STAGE, bundle.snapshot.consents)
    assert await other.space(ROW.id) == ROW
    assert (await other.stage(ROW.id)).hands == STAGE.hands
    await other.close()


async def test_a_retried_push_does_not_list_a_segment_twice(link: RedisLink) -> None:
    await link.call(lambda r: r.set(keys.space("sp2"), Snapshot(ROW, STAGE, []).encode()))
    entry = SegmentEntry(0, 1.0, 1.0)
    for _ in range(2):
        await link.call(lambda r: r.rpush(keys.index("sp2"), encode_entry(entry)))
    await link.call(lambda r: r.hset(keys.segments("sp2"), "0", b"x"))
    bundle = await fetch(link, "sp2")
    assert bundle is not None and [e.msn for e in bundle.entries] == [0]


async def test_pushes_wait_out_an_outage(
    link: RedisLink, redis: RunningRedis, tmp_path: Path
) -> None:
    db = Database(tmp_path / "c.sqlite3")
    await db.open()
    replicator = Replicator(link, db)
    replicator.start()
    redis.kill()
    # The live pipeline is not held up: the segment is queued and the call returns.
    await replicator.segment("sp3", SegmentEntry(0, 1.0, 1.0), b"during")
    assert replicator.pending >= 1
    redis.start()
    for _ in range(50):
        if replicator.pending == 0:
            break
        await asyncio.sleep(0.1)
    assert replicator.pending == 0
    assert await link.call(lambda r: r.hget(keys.segments("sp3"), "0")) == b"during"
    await replicator.stop()
    await db.close()


async def test_a_node_that_lost_its_space_cannot_overwrite_the_new_owners_copy(
    link: RedisLink, tmp_path: Path
) -> None:
    """Split view: A stops reaching Redis while B still does. B takes the space over and
    records on; when A reaches Redis again, what A queued meanwhile must not replace B's."""
    space = "sp4"
    a_db, b_db = Database(tmp_path / "a.sqlite3"), Database(tmp_path / "b.sqlite3")
    await a_db.open()
    await b_db.open()
    await a_db.insert_space(replace(ROW, id=space))
    a, b = Replicator(link, a_db, "n-a"), Replicator(link, b_db, "n-b")
    a.epochs.update(await link.call(lambda r: leases.claim_epochs(r, "n-a", [space])))
    await a.segment(space, SegmentEntry(0, 1.0, 1.0), b"a0")
    await a.flush()

    # A is cut off: its next segment and a change of its record wait in its queue.
    a.space_changed(space)
    await a.segment(space, SegmentEntry(1, 1.0, 2.0), b"a1 (after A lost the space)")
    await link.call(lambda r: r.delete(keys.owner(space)))  # A's lease ran out
    b.epochs.update(
        await link.call(lambda r: leases.claim_epochs(r, "n-b", [space], takeover=True))
    )
    await b_db.insert_space(replace(ROW, id=space, title="B's"))
    b.space_changed(space)
    await b.segment(space, SegmentEntry(1, 1.0, 2.5, discontinuity=True), b"b1")
    await b.flush()

    await a.flush()  # A reaches Redis again
    assert a.fenced == 2 and a.pending == 0, "A's record and segment were refused, not kept"
    bundle = await fetch(link, space)
    assert bundle is not None
    assert bundle.snapshot.row.title == "B's"
    assert [(e.msn, e.discontinuity) for e in bundle.entries] == [(0, False), (1, True)]
    assert bundle.segments == {0: b"a0", 1: b"b1"}

    # B ends the space and lets go of it: A's old epoch still cannot write.
    await link.call(lambda r: leases.release(r, "n-b", [space]))
    await a.segment(space, SegmentEntry(2, 1.0, 3.0), b"a2")
    await a.flush()
    assert a.fenced == 3
    assert 2 not in (await fetch(link, space) or bundle).segments
    await a_db.close()
    await b_db.close()
