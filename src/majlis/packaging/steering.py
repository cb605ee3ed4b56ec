"""The steered multivariant playlist and its HLS Content Steering manifest. Pure: no I/O.

One variant per pathway, each an absolute URL of the same media playlist through that edge,
tagged with its PATHWAY-ID; `#EXT-X-CONTENT-STEERING` points at the steering manifest, which
the player reloads every TTL seconds and which lists the pathways in order of preference. A
player whose pathway fails (no answer, a refused connection, errors past its retries) puts
that pathway in its penalty box and plays from the next one in the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from majlis.edge.pathways import NAME, Pathway
from majlis.errors import BadRequest
from majlis.packaging.playlist import VERSION, stream_inf

PLAYLIST = "steered.m3u8"
MANIFEST = "steering.json"
# How often a player reloads the steering manifest. The order only changes when the server
# is restarted with other --pathway flags, so a minute is soon enough for players to follow,
# and a player does not stay on a backup pathway much longer than its own penalty box
# (5 minutes in hls.js) once the preferred edge is back.
TTL_S = 60
# What an edge or browser may keep a manifest: shorter than TTL, so a reload sees a change.
CACHE_CONTROL = f"public, max-age={TTL_S // 2}"
MAX_THROUGHPUT_DIGITS = 12


def render_steered(pathways: Sequence[Pathway], space_id: str, bitrate: int) -> str:
    """The multivariant playlist: the first pathway applies until the manifest arrives."""
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        # Relative: reloads go wherever this playlist came from (the origin, or the host
        # that serves the pages), never through one of the edges it steers between.
        f'#EXT-X-CONTENT-STEERING:SERVER-URI="{MANIFEST}",PATHWAY-ID="{pathways[0].name}"',
    ]
    for pathway in pathways:
        lines.append(stream_inf(bitrate, f',PATHWAY-ID="{pathway.name}"'))
        lines.append(pathway.url(f"/live/{space_id}/audio.m3u8"))
    return "\n".join(lines) + "\n"


def manifest(pathways: Sequence[Pathway]) -> dict[str, object]:
    """The steering manifest: the configured order, the same for every player.

    The same answer for everyone keeps it one cached object per edge; a player's own failures
    are handled by its penalty box, which skips a failed pathway whatever the order says.
    """
    return {"VERSION": 1, "TTL": TTL_S, "PATHWAY-PRIORITY": [p.name for p in pathways]}


def check_query(query: Iterable[tuple[str, str]]) -> None:
    """The parameters players add to a manifest request (`_HLS_pathway`, `_HLS_throughput`)
    do not change the answer, but a malformed one (each, if repeated) is a broken client:
    say so. Other parameters are ignored, as on the other listener URLs."""
    for key, value in query:
        if key == "_HLS_pathway" and not NAME.fullmatch(value):
            raise BadRequest(
                f"_HLS_pathway must be 1-32 characters of A-Z a-z 0-9 . - _, got {value[:40]!r}"
            )
        if key == "_HLS_throughput" and not (
            value.isascii() and value.isdigit() and len(value) <= MAX_THROUGHPUT_DIGITS
        ):
            raise BadRequest(
                "_HLS_throughput must be a non-negative decimal integer (bit/s), "
                f"got {value[:32]!r}"
            )
