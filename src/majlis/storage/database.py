"""SQLite in the data folder: spaces and their lifecycle.

All calls go through one worker thread, so the event loop never waits on the disk and the
connection is only ever used from that thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
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


@dataclass(frozen=True, slots=True)
class SpaceRow:
    id: str
    title: str
    status: str
    created_at: float
    started_at: float | None
    ended_at: float | None


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="majlis-db")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
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
            "INSERT INTO spaces VALUES (?, ?, ?, ?, ?, ?)",
            (row.id, row.title, row.status, row.created_at, row.started_at, row.ended_at),
        )

    async def update_status(self, space_id: str, status: str, column: str, at: float) -> None:
        if column not in ("started_at", "ended_at"):
            raise ValueError(f"unknown time column {column}")
        await self._run(
            self._exec,
            f"UPDATE spaces SET status = ?, {column} = ? WHERE id = ?",
            (status, at, space_id),
        )

    async def spaces(self) -> list[SpaceRow]:
        rows = await self._run(self._exec, "SELECT * FROM spaces ORDER BY created_at DESC", ())
        return [SpaceRow(*r) for r in rows]
