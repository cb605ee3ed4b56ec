"""`--pathway NAME=URL` and MAJLIS_PATHWAYS: what is accepted, and what is refused and why."""

from __future__ import annotations

import pytest

from majlis.cli import main
from majlis.config import Settings
from majlis.edge.pathways import (
    ENV,
    MAX_PATHWAYS,
    Pathway,
    parse_env,
    parse_pathway,
    parse_pathways,
)


@pytest.mark.parametrize(
    ("text", "pathway"),
    [
        ("a=https://edge-a.example", Pathway("a", "https://edge-a.example")),
        ("a=https://edge-a.example/", Pathway("a", "https://edge-a.example")),
        ("cdn-1=https://cdn.example:443/majlis/", Pathway("cdn-1", "https://cdn.example/majlis")),
        ("E_2.x=http://10.0.0.7:8081", Pathway("E_2.x", "http://10.0.0.7:8081")),
        ("v6=http://[2001:db8::1]:8081", Pathway("v6", "http://[2001:db8::1]:8081")),
        (" b=http://edge-b.example:80 ", Pathway("b", "http://edge-b.example")),
    ],
)
def test_parse_pathway(text: str, pathway: Pathway) -> None:
    assert parse_pathway(text) == pathway


def test_url_through_a_pathway() -> None:
    pathway = parse_pathway("a=https://cdn.example/majlis")
    assert pathway.url("/live/x/audio.m3u8") == "https://cdn.example/majlis/live/x/audio.m3u8"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://edge-a.example", "must look like NAME=URL"),
        ("=https://edge-a.example", "name must be 1-32 characters"),
        ("a b=https://edge-a.example", "name must be 1-32 characters"),
        ("é=https://edge-a.example", "name must be 1-32 characters"),
        ("x" * 33 + "=https://edge-a.example", "name must be 1-32 characters"),
        ("a=ftp://edge-a.example", "must be http:// or https://"),
        ("a=edge-a.example", "must be http:// or https://"),
        ("a=https://", "no valid host"),
        ("a=https://user:pw@edge-a.example", "must not carry a user or password"),
        ("a=https://edge-a.example:99999", "invalid port"),
        ("a=https://edge-a.example/?x=1", "no query"),
        ("a=https://edge-a.example/#top", "no query"),
        ('a=https://edge-a.example/"quoted"', "plain path segments"),
        ("a=https://edge-a.example/a,b", "plain path segments"),
        ("a=https://edge-a.example/a%0a", "plain path segments"),
    ],
)
def test_parse_pathway_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="pathway") as exc:
        parse_pathway(text)
    assert message in str(exc.value)


def test_pathways_keep_their_order() -> None:
    names = [p.name for p in parse_pathways(["b=http://b.example", "a=http://a.example"])]
    assert names == ["b", "a"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["a=http://a.example", "a=http://b.example"], "names must be distinct"),
        (["a=http://a.example", "b=http://a.example/"], "same URL"),
        ([f"p{i}=http://e{i}.example" for i in range(MAX_PATHWAYS + 1)], "at most 16"),
    ],
)
def test_pathways_refused_together(entries: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pathways(entries)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().with_env().pathways == ()
    monkeypatch.setenv(ENV, "a=https://edge-a.example, b=https://edge-b.example,")
    assert Settings().with_env().pathways == parse_env(
        "a=https://edge-a.example,b=https://edge-b.example"
    )
    assert [p.name for p in Settings().with_env().pathways] == ["a", "b"]
    monkeypatch.setenv(ENV, "a=https://edge-a.example,a=https://edge-b.example")
    with pytest.raises(ValueError, match="distinct"):
        Settings().with_env()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pathway", "nourl"], "must look like NAME=URL"),
        (["--pathway", "a=http://a.example", "--pathway", "a=http://b.example"], "distinct"),
    ],
)
def test_serve_refuses_bad_pathways(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    assert main(["serve", "--data", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
