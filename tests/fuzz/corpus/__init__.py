"""The seed corpus: real inputs each fuzzer starts from, read from the files beside this one.

sdp/    offers as real publishers send them (aiortc 1.16 and Chromium 156 captured here;
        Firefox and OBS 30 written after theirs)
query/  playlist query strings, one per line (blank lines and `#` comments skipped)
json/   request bodies, one file each, sent as they are (some are not JSON on purpose)
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

HERE = Path(__file__).parent


@cache
def sdp_offers() -> tuple[bytes, ...]:
    return tuple(p.read_bytes() for p in sorted((HERE / "sdp").glob("*.sdp")))


@cache
def sdp_offer(name: str) -> bytes:
    return (HERE / "sdp" / f"{name}.sdp").read_bytes()


@cache
def queries() -> tuple[str, ...]:
    found: list[str] = []
    for path in sorted((HERE / "query").glob("*.txt")):
        for line in path.read_text("utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                found.append(line)
    return tuple(found)


@cache
def json_bodies(prefix: str = "") -> tuple[bytes, ...]:
    """Bodies whose file name starts with ``prefix`` (e.g. "space-", "beat-", "clip-")."""
    return tuple(p.read_bytes() for p in sorted((HERE / "json").glob(f"{prefix}*")))
