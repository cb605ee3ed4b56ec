"""Pathways: the edges (or CDNs) a listener may fetch a space's media through, by name.

`majlis serve --pathway a=https://edge-a.example --pathway b=https://edge-b.example` lists
them in order of preference. With two or more, the origin serves a multivariant playlist with
one variant per pathway and an HLS Content Steering manifest, so a player whose edge stops
answering moves to the next pathway by itself (docs/scale.md, "Listener failover").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from majlis.edge.nginxconf import parse_origin

# HLS Content Steering: a Pathway ID is made of [a-zA-Z0-9], '.', '-' and '_'. The length cap
# is ours: names go into every steering request (`_HLS_pathway`) and the edges' cache keys.
NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")
# A path prefix (a CDN that serves the origin under /majlis, say): plain segments only, so
# the URL can be written into a playlist line and a JSON string unquoted and unescaped.
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+)*/?")
MAX_PATHWAYS = 16
ENV = "MAJLIS_PATHWAYS"


@dataclass(frozen=True, slots=True)
class Pathway:
    name: str
    base: str  # scheme://host[:port][/prefix], without a trailing slash

    def url(self, path: str) -> str:
        """The absolute URL of an origin path (`/live/…`) through this pathway."""
        return self.base + path


def parse_pathway(text: str) -> Pathway:
    """`NAME=URL`; anything else is a ValueError that says why."""
    name, sep, url = text.strip().partition("=")
    if not sep:
        raise ValueError(f"--pathway must look like NAME=URL (a=https://edge-a.example): {text!r}")
    if not NAME.fullmatch(name):
        raise ValueError(
            f"--pathway name must be 1-32 characters of A-Z a-z 0-9 . - _, got {name[:40]!r}"
        )
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--pathway {name}: the URL must be http:// or https://, got {url[:80]!r}")
    if parts.query or parts.fragment or not _PREFIX.fullmatch(parts.path):
        raise ValueError(
            f"--pathway {name}: the URL must be scheme://host[:port][/path] with plain path "
            f"segments and no query: {url[:80]!r}"
        )
    try:
        origin = parse_origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError as exc:
        raise ValueError(f"--pathway {name}: {str(exc).replace('origin', 'pathway')}") from None
    default = 443 if origin.scheme == "https" else 80
    authority = origin.server if origin.port != default else origin.server.rsplit(":", 1)[0]
    return Pathway(name, f"{origin.scheme}://{authority}{parts.path.rstrip('/')}")


def parse_pathways(entries: Iterable[str]) -> tuple[Pathway, ...]:
    """Each `NAME=URL` in order of preference; names and URLs must be distinct."""
    pathways = tuple(parse_pathway(e) for e in entries)
    if len(pathways) > MAX_PATHWAYS:
        raise ValueError(f"at most {MAX_PATHWAYS} pathways, got {len(pathways)}")
    names = [p.name for p in pathways]
    if len(set(names)) != len(names):
        raise ValueError(f"--pathway names must be distinct, got {', '.join(names)}")
    bases = [p.base for p in pathways]
    if len(set(bases)) != len(bases):
        raise ValueError("two --pathway entries have the same URL: a pathway per edge")
    return pathways


def parse_env(text: str) -> tuple[Pathway, ...]:
    """`MAJLIS_PATHWAYS`: `NAME=URL` entries separated by commas (URLs here have none)."""
    return parse_pathways(e for e in text.split(",") if e.strip())
