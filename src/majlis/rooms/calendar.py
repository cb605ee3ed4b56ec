"""A space as an iCalendar event (RFC 5545), for "add to calendar" on a scheduled space."""

from __future__ import annotations

from datetime import UTC, datetime

PRODID = "-//Majlis//Majlis live audio rooms//EN"
# RFC 5545 3.1: lines SHOULD NOT be longer than 75 octets, excluding the line break.
MAX_LINE_OCTETS = 75
DEFAULT_DURATION = "PT1H"


def utc_stamp(epoch: float) -> str:
    """RFC 5545 3.3.5 form #2, UTC: 20261123T170500Z."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%dT%H%M%SZ")


def escape_text(text: str) -> str:
    """RFC 5545 3.3.11: backslash, semicolon, comma and newlines are escaped in TEXT."""
    text = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return "".join(c for c in text if c == "\t" or c >= " ")


def fold(line: str) -> str:
    """RFC 5545 3.1: split after 75 octets, continuation lines start with a space, and a
    UTF-8 sequence is never cut in two."""
    out: list[str] = []
    current, size, limit = "", 0, MAX_LINE_OCTETS
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            out.append(current)
            current, size, limit = " ", 1, MAX_LINE_OCTETS
        current += char
        size += width
    out.append(current)
    return "\r\n".join(out)


def event(
    *,
    uid: str,
    title: str,
    description: str,
    url: str,
    starts_at: float,
    stamp: float,
    language: str | None = None,
) -> bytes:
    lang = f";LANGUAGE={language}" if language else ""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{utc_stamp(stamp)}",
        f"DTSTART:{utc_stamp(starts_at)}",
        f"DURATION:{DEFAULT_DURATION}",
        f"SUMMARY{lang}:{escape_text(title)}",
        f"DESCRIPTION{lang}:{escape_text(description)}",
        f"URL:{url}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return ("\r\n".join(fold(line) for line in lines) + "\r\n").encode("utf-8")
