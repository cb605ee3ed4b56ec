"""The generated edge config: what it promises, what it refuses, and that nginx accepts it."""

from __future__ import annotations

import re
import shutil

import pytest

from majlis.cli import main
from majlis.edge.nginxconf import (
    LOCK_MARGIN_S,
    EdgeConfig,
    Origin,
    parse_hold,
    parse_listen,
    parse_origin,
    render,
)
from tests.support.nginx import check_config, free_port, make_prefix

ORIGIN = Origin("http", "127.0.0.1", 8080)


def _seconds(config: str, directive: str) -> list[int]:
    return [int(v) for v in re.findall(rf"^\s*{directive} (\d+)s;", config, re.M)]


def _location(config: str, start: str) -> str:
    begin = config.index(start)
    return config[begin : config.index("}", begin)]


def test_playlist_key_holds_the_ll_hls_parameters_and_only_those() -> None:
    playlists = _location(render(EdgeConfig(ORIGIN)), r"\.m3u8$")
    key = "$uri?$majlis_hls_msn$majlis_hls_part$majlis_hls_skip"
    assert f'proxy_cache_key "{key}";' in playlists
    # The origin gets the very query the key names.
    assert f"proxy_pass http://majlis_origin{key};" in playlists
    assert "proxy_cache_lock on;" in playlists
    assert "open_file_cache off;" in playlists
    assert "proxy_cache_valid 404 503 1s;" in playlists


def test_media_is_keyed_by_path_and_coalesced() -> None:
    media = _location(render(EdgeConfig(ORIGIN)), "init\\.mp4")
    assert "proxy_cache_key $uri;" in media
    assert "proxy_cache_lock on;" in media
    # Negative answers for parts are never cached (a part asked too early exists soon).
    assert "proxy_cache_valid" not in media


@pytest.mark.parametrize("hold", [3.0, 7.5, 90.0])
def test_the_cache_lock_outlives_the_origins_hold(hold: float) -> None:
    config = render(EdgeConfig(ORIGIN, hold_s=hold))
    for directive in ("proxy_cache_lock_timeout", "proxy_cache_lock_age", "proxy_read_timeout"):
        # The first one is at http level, where the cached /live/ locations inherit it from.
        value = _seconds(config, directive)[0]
        assert value >= hold + LOCK_MARGIN_S, directive
    live = config[config.index("server {") : config.index("location / {")]
    assert "proxy_read_timeout" not in live


def test_runs_unprivileged_and_writes_only_under_its_folders() -> None:
    config = render(EdgeConfig(ORIGIN, cache_dir="/srv/edge cache"))
    assert not re.search(r"^\s*(user|daemon)\b", config, re.M)
    paths = re.findall(r"^\s*(?:pid|error_log|access_log|\w+_temp_path) (\S+)", config, re.M)
    assert len(paths) == 8
    assert all(not p.startswith("/") for p in paths), paths  # relative: under the prefix
    assert 'proxy_cache_path "/srv/edge cache" levels' in config


def test_edge_basics() -> None:
    config = render(EdgeConfig(ORIGIN, listen="127.0.0.1:9000", workers=2))
    for line in (
        "worker_processes 2;",
        "listen 127.0.0.1:9000 backlog=4096;",
        "server 127.0.0.1:8080 max_fails=0;",
        "proxy_set_header Host 127.0.0.1:8080;",
        "keepalive 64;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection $majlis_connection;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_cache_use_stale error timeout updating http_502 http_504;",
        "pcre_jit on;",
        "sendfile off;",
        "tcp_nopush off;",
        "open_file_cache max=10000 inactive=30s;",
    ):
        assert line in config, line


def test_https_origin() -> None:
    config = render(EdgeConfig(parse_origin("https://origin.example.org")))
    assert "server origin.example.org:443 max_fails=0;" in config
    assert "proxy_pass https://majlis_origin$uri;" in config
    assert "proxy_ssl_name origin.example.org;" in config
    assert "proxy_set_header Host origin.example.org;" in config


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8080", Origin("http", "127.0.0.1", 8080)),
        ("http://origin.internal/", Origin("http", "origin.internal", 80)),
        ("http://[::1]:9000", Origin("http", "::1", 9000)),
    ],
)
def test_parse_origin(url: str, origin: Origin) -> None:
    assert parse_origin(url) == origin


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8080", "must be an http:// or https:// URL"),
        ("ftp://x", "must be an http:// or https:// URL"),
        ("http://a:b@host", "must not carry a user or password"),
        ("http://host/live", "no path or query"),
        ("http://host?x=1", "no path or query"),
        ("http://ho;st", "no valid host"),
        ("http://", "no valid host"),
        ("http://host:99999", "invalid port"),
    ],
)
def test_parse_origin_refuses(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_origin(url)


def test_parse_listen() -> None:
    assert parse_listen("8081") == "8081"
    assert parse_listen("0.0.0.0:80") == "0.0.0.0:80"
    assert parse_listen("[::]:8443") == "[::]:8443"
    for bad in ("0", "70000", "x", "::1:80", "bad host:80", ""):
        with pytest.raises(ValueError, match="--listen"):
            parse_listen(bad)


def test_parse_hold() -> None:
    assert parse_hold("3") == 3.0
    for bad in ("0.1", "nan", "x", "1000"):
        with pytest.raises(ValueError, match="--hold"):
            parse_hold(bad)


def test_cache_dir_with_nginx_syntax_is_refused() -> None:
    for bad in ('a"b', "a;b", "$HOME", "a{b", "a\nb", ""):
        with pytest.raises(ValueError, match="--cache-dir"):
            render(EdgeConfig(ORIGIN, cache_dir=bad))


def test_command_prints_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge-config", "--origin", "http://10.0.0.5:8080", "--listen", "9001"]) == 0
    out = capsys.readouterr().out
    assert out == render(EdgeConfig(Origin("http", "10.0.0.5", 8080), listen="9001"))


def test_command_refuses_a_bad_origin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge-config", "--origin", "10.0.0.5"]) == 2
    assert "must be an http:// or https:// URL" in capsys.readouterr().err


@pytest.mark.parametrize("cache_dir", ["cache", "ABSOLUTE"])
def test_nginx_accepts_the_config(cache_dir: str) -> None:
    prefix = make_prefix()
    try:
        where = str(prefix / "edge cache") if cache_dir == "ABSOLUTE" else cache_dir
        config = render(EdgeConfig(ORIGIN, listen=f"127.0.0.1:{free_port()}", cache_dir=where))
        checked = check_config(prefix, config)
        assert checked.returncode == 0, checked.stderr
        assert "test is successful" in checked.stderr
        assert "[warn]" not in checked.stderr and "[alert]" not in checked.stderr, checked.stderr
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_nginx_refuses_a_broken_config() -> None:
    # The check above would pass on anything if nginx -t were not really run.
    prefix = make_prefix()
    try:
        broken = render(EdgeConfig(ORIGIN, listen=f"127.0.0.1:{free_port()}")).replace(
            "proxy_cache_lock on;", "proxy_cache_lock maybe;", 1
        )
        checked = check_config(prefix, broken)
        assert checked.returncode != 0
        assert "proxy_cache_lock" in checked.stderr
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_several_nodes_of_a_cluster_share_one_upstream() -> None:
    other = Origin("http", "127.0.0.2", 8080)
    config = render(EdgeConfig(ORIGIN, more_origins=(other,)))
    upstream = _location(config, "upstream majlis_origin")
    assert "server 127.0.0.1:8080 max_fails=1 fail_timeout=2s;" in upstream
    assert "server 127.0.0.2:8080 max_fails=1 fail_timeout=2s;" in upstream
    # The lone origin is never marked failed.
    assert "max_fails=0" in _location(render(EdgeConfig(ORIGIN)), "upstream majlis_origin")
    prefix = make_prefix()
    try:
        edge = EdgeConfig(ORIGIN, listen=f"127.0.0.1:{free_port()}", more_origins=(other,))
        checked = check_config(prefix, render(edge))
        assert checked.returncode == 0, checked.stderr
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_several_origins_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["edge-config", "--origin", "http://10.0.0.5:8080", "--origin", "http://10.0.0.6:8080"]
    assert main(args) == 0
    assert "server 10.0.0.6:8080 max_fails=1" in capsys.readouterr().out
    assert main([*args[:3], "--origin", "https://10.0.0.6"]) == 2
    assert "same scheme" in capsys.readouterr().err
    assert main([*args[:3], *args[1:3]]) == 2
    assert "given twice" in capsys.readouterr().err


def test_steering_manifest_is_one_object_whatever_the_query() -> None:
    steering = _location(render(EdgeConfig(ORIGIN)), "steering\\.json")
    assert "proxy_cache_key $uri;" in steering
    # The players' _HLS_pathway and _HLS_throughput are not sent on: one answer for all.
    assert "proxy_pass http://majlis_origin$uri;" in steering
    assert "proxy_cache_lock on;" in steering
    assert "proxy_cache_valid" not in steering
