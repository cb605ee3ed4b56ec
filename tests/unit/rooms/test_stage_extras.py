"""Reactions, the iCalendar event, schedules and the stage's storage round trip."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from majlis.guard.ratelimit import TooManyRequests
from majlis.rooms import calendar
from majlis.rooms.reactions import ALLOWED, RECENT_S, Reactions
from majlis.rooms.registry import parse_schedule
from majlis.rooms.space import load_stage, stage_rows
from majlis.rooms.stage import HOST_SUBJECT, Actor, Stage
from majlis.rooms.tokens import Role
from majlis.storage.database import Database

NOW = 1_800_000_000.0
HOST = Actor(HOST_SUBJECT, Role.HOST)


def test_reactions_count_recent_and_total() -> None:
    reactions = Reactions()
    reactions.add("a", "👏", NOW)
    reactions.add("b", "👏", NOW + 1)
    reactions.add("a", "🔥", NOW + 2)
    assert reactions.recent(NOW + 2) == {"👏": 2, "🔥": 1}
    assert reactions.recent(NOW + 1 + RECENT_S + 0.5) == {"🔥": 1}
    assert reactions.summary(NOW + 100) == {
        "window_s": RECENT_S, "recent": {}, "total": {"👏": 2, "🔥": 1}
    }  # fmt: skip


def test_reactions_are_rate_limited_per_listener() -> None:
    reactions = Reactions(burst=5, rate=0.5)
    for _ in range(5):
        reactions.add("a", "👍", NOW)
    with pytest.raises(TooManyRequests) as exc:
        reactions.add("a", "👍", NOW)
    assert exc.value.status == 429 and exc.value.retry_after == 2
    reactions.add("b", "👍", NOW)  # another listener has a bucket of their own
    reactions.add("a", "👍", NOW + 2)  # refilled
    assert reactions.totals["👍"] == 7


@pytest.mark.parametrize("emoji", ["<script>", "", None, 5, "👏👏", "🙂"])
def test_only_allowed_emoji(emoji: object) -> None:
    with pytest.raises(ValueError, match="emoji must be one of"):
        Reactions().add("a", emoji, NOW)
    assert "👏" in ALLOWED


def unfold(text: str) -> list[str]:
    """RFC 5545 3.1: every line ends CRLF, is at most 75 octets, continuations start with a
    space; returns the logical lines."""
    assert text.endswith("\r\n")
    physical = text[:-2].split("\r\n")
    for line in physical:
        assert len(line.encode()) <= 75, line
        assert "\n" not in line and "\r" not in line
    logical: list[str] = []
    for line in physical:
        if line.startswith(" "):
            logical[-1] += line[1:]
        else:
            logical.append(line)
    return logical


def test_ics_is_valid_and_folds_long_multibyte_lines() -> None:
    title = "Elon Musk مع ترامب; live, now"
    body = calendar.event(
        uid="abc@majlis",
        title=title,
        description="سطر أول\nsecond line, with a comma; " + "طويل " * 40,
        url="http://127.0.0.1:8080/s/abc",
        starts_at=NOW,
        stamp=NOW - 3600,
        language="ar",
    ).decode("utf-8")
    lines = unfold(body)
    assert lines[:2] == ["BEGIN:VCALENDAR", "VERSION:2.0"]
    assert lines[-2:] == ["END:VEVENT", "END:VCALENDAR"]
    fields = dict(line.split(":", 1) for line in lines)
    assert fields["UID"] == "abc@majlis"
    assert fields["DTSTART"] == "20270115T080000Z"
    assert fields["DTSTAMP"] == "20270115T070000Z"
    assert fields["SUMMARY;LANGUAGE=ar"] == "Elon Musk مع ترامب\\; live\\, now"
    assert fields["DESCRIPTION;LANGUAGE=ar"].startswith("سطر أول\\nsecond line\\, with a comma\\;")
    assert fields["URL"] == "http://127.0.0.1:8080/s/abc"


def test_fold_never_cuts_a_character() -> None:
    folded = calendar.fold("X:" + "ب" * 100)
    for line in folded.split("\r\n"):
        assert len(line.encode()) <= 75
        line.encode().decode("utf-8")  # whole characters only


def test_schedule_fields_are_validated() -> None:
    plan = parse_schedule(
        {"description": " d ", "language": "ar-EG", "starts_at": "2027-01-15T11:00:00+03:00"}, NOW
    )
    assert (plan.description, plan.language, plan.starts_at) == ("d", "ar-EG", NOW)
    assert parse_schedule({"starts_at": "2027-01-15T08:00:00Z"}, NOW).starts_at == NOW
    assert parse_schedule({}, NOW).starts_at is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"description": 5}, "'description' must be a string"),
        ({"description": "x" * 2001}, "longer than 2000"),
        ({"language": "english!"}, "'language' must be a language tag"),
        ({"language": 7}, "'language' must be a language tag"),
        ({"starts_at": "tomorrow"}, "is not an ISO 8601"),
        ({"starts_at": 1800000000}, "must be an ISO 8601 date and time string"),
        ({"starts_at": "2027-01-15T08:00:00"}, "needs a time zone"),
        ({"starts_at": "2030-01-15T08:00:00Z"}, "between a day ago and a year"),
    ],
)
def test_bad_schedules(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(body, NOW)


def test_the_stage_survives_the_database(tmp_path: Path) -> None:
    stage = Stage()
    for n in range(3):
        stage.raise_hand(Actor(f"l-{n}", Role.LISTENER), f"p{n}", NOW + n)
    stage.invite(HOST, "l-0", NOW)
    member = stage.accept(Actor("l-0", Role.LISTENER), NOW)
    member.token_id = "t0"
    stage.promote(HOST, "l-0")
    stage.mute(HOST, "l-0", lock=True)
    stage.invite(HOST, "l-1", NOW)
    stage.block(HOST, "l-2")
    stage.join_anonymous("link", "link-token", NOW)  # not stored: leaves with its session
    stage.revoked.add("old")

    async def roundtrip() -> Stage:
        db = Database(tmp_path / "db.sqlite3")
        await db.open()
        await db.save_stage("sp", stage_rows(stage), NOW)
        await db.save_stage("sp", stage_rows(stage), NOW + 1)  # saving twice is idempotent
        await db.close()
        again = Database(tmp_path / "db.sqlite3")
        await again.open()
        restored = Stage()
        load_stage(restored, await again.stage("sp"))
        await again.close()
        return restored

    restored = asyncio.run(roundtrip())
    assert list(restored.members) == ["l-0"]
    cohost = restored.members["l-0"]
    assert (cohost.role, cohost.muted, cohost.locked, cohost.token_id) == (
        Role.COHOST, True, True, "t0"
    )  # fmt: skip
    assert list(restored.invitations) == ["l-1"] and not restored.hands
    assert restored.banned == {"l-2"} and restored.revoked == {"old"}


def test_an_old_data_folder_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE spaces (id TEXT PRIMARY KEY, title TEXT NOT NULL, status TEXT NOT NULL,"
        " created_at REAL NOT NULL, started_at REAL, ended_at REAL)"
    )
    conn.execute("INSERT INTO spaces VALUES ('old', 'Before the stage', 'ended', 1, 2, 3)")
    conn.commit()
    conn.close()

    async def open_old() -> list[object]:
        db = Database(path)
        await db.open()
        rows = await db.spaces()
        stage = await db.stage("old")
        await db.close()
        return [rows[0], stage.members]

    row, members = asyncio.run(open_old())
    assert row.title == "Before the stage" and row.description == "" and row.starts_at is None  # type: ignore[attr-defined]
    assert members == []
