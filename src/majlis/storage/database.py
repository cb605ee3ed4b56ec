"""SQLite in the data folder: spaces, their lifecycle and their stage.

All calls go through one worker thread, so the event loop never waits on the disk and the
connection is only ever used from that thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS spaces (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL
);
"""

# Each step brings a data folder from version i to i + 1 (PRAGMA user_version); folders made
# before the stage existed are version 0 and gain its columns and tables on first open.
MIGRATIONS = (
    """
ALTER TABLE spaces ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE spaces ADD COLUMN language TEXT;
ALTER TABLE spaces ADD COLUMN starts_at REAL;
CREATE TABLE IF NOT EXISTS stage_members (
    space_id TEXT NOT NULL, subject TEXT NOT NULL, role TEXT NOT NULL, name TEXT NOT NULL,
    since REAL NOT NULL, muted INTEGER NOT NULL, locked INTEGER NOT NULL,
    token_id TEXT NOT NULL, PRIMARY KEY (space_id, subject)
);
CREATE TABLE IF NOT EXISTS hands (
    space_id TEXT NOT NULL, subject TEXT NOT NULL, name TEXT NOT NULL,
    raised_at REAL NOT NULL, PRIMARY KEY (space_id, subject)
);
CREATE TABLE IF NOT EXISTS invitations (
    space_id TEXT NOT NULL, subject TEXT NOT NULL, name TEXT NOT NULL,
    invited_by TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (space_id, subject)
);
CREATE TABLE IF NOT EXISTS bans (
    space_id TEXT NOT NULL, subject TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (space_id, subject)
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    space_id TEXT NOT NULL, token_id TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (space_id, token_id)
);
CREATE TABLE IF NOT EXISTS consents (
    space_id TEXT NOT NULL, subject TEXT NOT NULL, name TEXT NOT NULL,
    notice TEXT NOT NULL, at REAL NOT NULL
);
""",
)


@dataclass(frozen=True, slots=True)
class SpaceRow:
    id: str
    title: str
    status: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    description: str = ""
    language: str | None = None
    starts_at: float | None = None


@dataclass(frozen=True, slots=True)
class StageRows:
    """A space's stage as stored: rows of each table, in the tables' column order."""

    members: list[tuple[Any, ...]]
    hands: list[tuple[Any, ...]]
    invitations: list[tuple[Any, ...]]
    banned: list[str]
    revoked: list[str]


def migrate(conn: sqlite3.Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits first; the version is written with the step's last statement.
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="majlis-db")
        self._conn: sqlite3.Connection | None = None
        # Told the id of every space whose stored state changed (the cluster's replication).
        self.changed: Callable[[str], None] | None = None

    def _changed(self, space_id: str) -> None:
        if self.changed is not None:
            self.changed(space_id)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        migrate(conn)
        self._conn = conn

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(_close)
        self._executor.shutdown(wait=True)

    def _exec(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self._conn is not None
        with self._conn:
            return self._conn.execute(sql, args).fetchall()

    async def insert_space(self, row: SpaceRow) -> None:
        await self._run(
            self._exec,
            "INSERT INTO spaces (id, title, status, created_at, started_at, ended_at,"
            " description, language, starts_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id, row.title, row.status, row.created_at, row.started_at, row.ended_at,
                row.description, row.language, row.starts_at,
            ),
        )  # fmt: skip
        self._changed(row.id)

    async def update_status(self, space_id: str, status: str, column: str, at: float) -> None:
        if column not in ("started_at", "ended_at"):
            raise ValueError(f"unknown time column {column}")
        await self._run(
            self._exec,
            f"UPDATE spaces SET status = ?, {column} = ? WHERE id = ?",
            (status, at, space_id),
        )
        self._changed(space_id)

    async def spaces(self) -> list[SpaceRow]:
        rows = await self._run(
            self._exec,
            "SELECT id, title, status, created_at, started_at, ended_at, description, language,"
            " starts_at FROM spaces ORDER BY created_at DESC",
            (),
        )
        return [SpaceRow(*r) for r in rows]

    async def space(self, space_id: str) -> SpaceRow | None:
        rows = await self._run(
            self._exec,
            "SELECT id, title, status, created_at, started_at, ended_at, description, language,"
            " starts_at FROM spaces WHERE id = ?",
            (space_id,),
        )
        return SpaceRow(*rows[0]) if rows else None

    async def import_space(
        self, row: SpaceRow, stage: StageRows, consents: list[tuple[str, str, str, float]]
    ) -> None:
        """Replace whatever this database holds of a space by another node's copy of it."""
        await self._run(self._import_space, row, stage, consents)

    def _import_space(
        self, row: SpaceRow, stage: StageRows, consents: list[tuple[str, str, str, float]]
    ) -> None:
        assert self._conn is not None
        with self._conn as conn:
            for table in ("spaces", "stage_members", "hands", "invitations", "bans"):
                column = "id" if table == "spaces" else "space_id"
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (row.id,))
            for table in ("revoked_tokens", "consents"):
                conn.execute(f"DELETE FROM {table} WHERE space_id = ?", (row.id,))
            conn.execute(
                "INSERT INTO spaces (id, title, status, created_at, started_at, ended_at,"
                " description, language, starts_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id, row.title, row.status, row.created_at, row.started_at,
                    row.ended_at, row.description, row.language, row.starts_at,
                ),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO consents VALUES (?, ?, ?, ?, ?)",
                [(row.id, *c) for c in consents],
            )
        self._save_stage(row.id, stage, row.created_at)

    # -- the stage -------------------------------------------------------------------------

    async def save_stage(self, space_id: str, rows: StageRows, at: float) -> None:
        """Replace a space's members, hand queue and invitations, and add its new bans and
        revoked tokens, in one transaction."""
        await self._run(self._save_stage, space_id, rows, at)
        self._changed(space_id)

    def _save_stage(self, space_id: str, rows: StageRows, at: float) -> None:
        assert self._conn is not None
        with self._conn as conn:
            for table, values in (
                ("stage_members", rows.members),
                ("hands", rows.hands),
                ("invitations", rows.invitations),
            ):
                conn.execute(f"DELETE FROM {table} WHERE space_id = ?", (space_id,))
                for row in values:
                    marks = ", ".join("?" * (len(row) + 1))
                    conn.execute(f"INSERT INTO {table} VALUES ({marks})", (space_id, *row))
            conn.executemany(
                "INSERT OR IGNORE INTO bans VALUES (?, ?, ?)",
                [(space_id, subject, at) for subject in rows.banned],
            )
            conn.executemany(
                "INSERT OR IGNORE INTO revoked_tokens VALUES (?, ?, ?)",
                [(space_id, token_id, at) for token_id in rows.revoked],
            )

    async def add_consent(
        self, space_id: str, subject: str, name: str, notice: str, at: float
    ) -> None:
        await self._run(
            self._exec,
            "INSERT INTO consents VALUES (?, ?, ?, ?, ?)",
            (space_id, subject, name, notice, at),
        )
        self._changed(space_id)

    async def consents(self, space_id: str) -> list[tuple[str, str, str, float]]:
        rows = await self._run(
            self._exec,
            "SELECT subject, name, notice, at FROM consents WHERE space_id = ? ORDER BY at",
            (space_id,),
        )
        return [(str(a), str(b), str(c), float(d)) for a, b, c, d in rows]

    async def stage(self, space_id: str) -> StageRows:
        def select(sql: str) -> list[tuple[Any, ...]]:
            return self._exec(sql, (space_id,))

        def load() -> StageRows:
            return StageRows(
                members=select(
                    "SELECT subject, role, name, since, muted, locked, token_id"
                    " FROM stage_members WHERE space_id = ? ORDER BY since"
                ),
                hands=select(
                    "SELECT subject, name, raised_at FROM hands WHERE space_id = ?"
                    " ORDER BY raised_at"
                ),
                invitations=select(
                    "SELECT subject, name, invited_by, at FROM invitations WHERE space_id = ?"
                ),
                banned=[r[0] for r in select("SELECT subject FROM bans WHERE space_id = ?")],
                revoked=[
                    r[0] for r in select("SELECT token_id FROM revoked_tokens WHERE space_id = ?")
                ],
            )

        result: StageRows = await self._run(load)
        return result
