"""The steered multivariant playlist and the content steering manifest."""

from __future__ import annotations

import json

import m3u8
import pytest

from majlis.edge.pathways import parse_pathways
from majlis.errors import BadRequest
from majlis.packaging import steering
from majlis.packaging.playlist import render_multivariant

PATHWAYS = parse_pathways(["a=https://edge-a.example", "b=http://10.0.0.8:8081/majlis/"])


def test_one_variant_per_pathway_with_the_steering_tag() -> None:
    text = steering.render_steered(PATHWAYS, "abc", 48_000)
    assert text.startswith("#EXTM3U\n")
    assert '#EXT-X-CONTENT-STEERING:SERVER-URI="steering.json",PATHWAY-ID="a"\n' in text
    playlist = m3u8.loads(text)
    assert playlist.is_variant
    assert [v.uri for v in playlist.playlists] == [
        "https://edge-a.example/live/abc/audio.m3u8",
        "http://10.0.0.8:8081/majlis/live/abc/audio.m3u8",
    ]
    assert [v.stream_info.pathway_id for v in playlist.playlists] == ["a", "b"]
    # The same rendition as index.m3u8 on every pathway.
    plain = m3u8.loads(render_multivariant("audio.m3u8", 48_000)).playlists[0].stream_info
    for variant in playlist.playlists:
        assert variant.stream_info.bandwidth == plain.bandwidth
        assert variant.stream_info.codecs == plain.codecs == "mp4a.40.2"


def test_the_first_pathway_applies_until_the_manifest_arrives() -> None:
    reordered = (PATHWAYS[1], PATHWAYS[0])
    text = steering.render_steered(reordered, "abc", 48_000)
    assert 'PATHWAY-ID="b"\n' in text.splitlines(keepends=True)[3]


def test_manifest_lists_the_configured_order() -> None:
    manifest = steering.manifest(PATHWAYS)
    assert manifest == {"VERSION": 1, "TTL": steering.TTL_S, "PATHWAY-PRIORITY": ["a", "b"]}
    assert json.loads(json.dumps(manifest)) == manifest
    # A cache may keep it, but less than a TTL: each reload can see a change.
    max_age = int(steering.CACHE_CONTROL.rsplit("=", 1)[1])
    assert 0 < max_age < steering.TTL_S


@pytest.mark.parametrize(
    "query",
    [
        [],
        [("_HLS_pathway", "a")],
        [("_HLS_pathway", "gone-since.restart_2")],
        [("_HLS_pathway", "b"), ("_HLS_throughput", "1234567")],
        [("_HLS_throughput", "0")],
        [("cachebuster", "!!")],
    ],
)
def test_query_accepted(query: list[tuple[str, str]]) -> None:
    steering.check_query(query)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ([("_HLS_pathway", "")], "_HLS_pathway must be"),
        ([("_HLS_pathway", "a b")], "_HLS_pathway must be"),
        ([("_HLS_pathway", "x" * 33)], "_HLS_pathway must be"),
        ([("_HLS_pathway", "a"), ("_HLS_pathway", "ü")], "_HLS_pathway must be"),
        ([("_HLS_throughput", "-1")], "_HLS_throughput must be"),
        ([("_HLS_throughput", "1.5")], "_HLS_throughput must be"),
        ([("_HLS_throughput", "٣")], "_HLS_throughput must be"),
        ([("_HLS_throughput", "9" * 13)], "_HLS_throughput must be"),
    ],
)
def test_query_refused(query: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        steering.check_query(query)
