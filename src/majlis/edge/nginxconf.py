"""The nginx configuration of a caching edge in front of a Majlis origin.

Pure rendering: `render(EdgeConfig)` returns the text of a complete nginx.conf meant to run
unprivileged (`nginx -p PREFIX -c PREFIX/nginx.conf -e stderr`): no `user` or `daemon`
directive, and every file nginx writes lives under the prefix or the cache folder.

What the edge is for: every listener of a space asks for the same URLs, so N listeners on an
edge cost the origin one request per object. `proxy_cache_lock` turns N simultaneous misses
into one origin request, including the LL-HLS requests the origin holds open (blocking
playlist reloads and preload-hint parts), as long as the lock outlives the hold.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_LISTEN = "8081"
DEFAULT_CACHE_DIR = "cache"
# The origin holds a blocking reload or a preload-hint part at most three target durations
# (RFC 8216bis 6.2.5.2); with the default 1.07 s segments the target duration is 1 s.
DEFAULT_HOLD_S = 3.0
# The cache lock must outlive the origin's hold, or the waiting requests give up and each
# goes to the origin uncached: the very stampede the lock is there to stop.
LOCK_MARGIN_S = 5.0
# Per worker. Each listener holds up to two connections (blocking reload + part), and each
# origin request one more; 16,384 open files per worker stays below common hard limits.
WORKER_CONNECTIONS = 8192
WORKER_OPEN_FILES = 16384
# Same as the origin's limit on any request body (listener session beacons are < 1 KiB).
MAX_BODY = "256k"

_SPACE = "[A-Za-z0-9_-]{1,32}"  # rooms.registry.valid_space_id, kept narrow for the regexes
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
# Characters nginx would read as syntax or variables even inside quotes.
_UNSAFE_PATH = re.compile(r'[\x00-\x1f"\\$;{}\x7f]')


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # "http" or "https"
    host: str  # a hostname, an IPv4 address, or an IPv6 address without brackets
    port: int

    @property
    def server(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def authority(self) -> str:
        """Host header value: the origin's own name, not the upstream block's."""
        default = 443 if self.scheme == "https" else 80
        return self.server if self.port != default else self.server.rsplit(":", 1)[0]


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    origin: Origin
    listen: str = DEFAULT_LISTEN
    cache_dir: str = DEFAULT_CACHE_DIR
    workers: int | None = None  # None: one per core
    hold_s: float = DEFAULT_HOLD_S
    # Further nodes of the same cluster: any node answers for any space (it relays to the
    # node that runs it), so the edge may use whichever is up.
    more_origins: tuple[Origin, ...] = ()

    def __post_init__(self) -> None:
        if any(o.scheme != self.origin.scheme for o in self.more_origins):
            raise ValueError("every --origin must use the same scheme (all http or all https)")
        servers = [o.server for o in (self.origin, *self.more_origins)]
        if len(set(servers)) != len(servers):
            raise ValueError("the same --origin is given twice")


def parse_origin(url: str) -> Origin:
    """`http(s)://host[:port]` of the origin; anything else is a ValueError that says why."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"the origin must be an http:// or https:// URL, got {url[:80]!r}")
    if parts.username or parts.password:
        raise ValueError("the origin URL must not carry a user or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the origin URL must be scheme://host[:port] with no path or query")
    host = parts.hostname or ""
    if not _valid_host(host):
        raise ValueError(f"the origin URL has no valid host: {url[:80]!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the origin URL has an invalid port: {url[:80]!r}") from None
    return Origin(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host))
    return True


def parse_listen(text: str) -> str:
    """`PORT` or `ADDRESS:PORT` (IPv6 in brackets), as nginx's `listen` takes it."""
    address, _, port_text = text.strip().rpartition(":")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"--listen must be PORT or ADDRESS:PORT with a port 1-65535: {text!r}")
    if address:
        bare = address[1:-1] if address.startswith("[") and address.endswith("]") else address
        if bare == address and ":" in bare:
            raise ValueError(f"--listen: put an IPv6 address in brackets: {text!r}")
        if not _valid_host(bare):
            raise ValueError(f"--listen has an invalid address: {text!r}")
        return f"{address}:{int(port_text)}"
    return str(int(port_text))


def check_path(path: str) -> str:
    if not path or _UNSAFE_PATH.search(path):
        raise ValueError(f"--cache-dir must be a path without quotes, $, ; or braces: {path!r}")
    return path


def parse_hold(text: str) -> float:
    try:
        hold = float(text)
    except ValueError:
        raise ValueError(f"--hold must be a number of seconds, got {text!r}") from None
    if not 0.5 <= hold <= 300:
        raise ValueError(f"--hold must be between 0.5 and 300 seconds, got {text!r}")
    return hold


def _seconds(value: float) -> str:
    return f"{math.ceil(value)}s"


def render(config: EdgeConfig) -> str:
    """The whole nginx.conf of one edge."""
    cache = check_path(config.cache_dir).rstrip("/") or "/"
    return "\n".join(
        [
            _HEADER.format(origin=f"{config.origin.scheme}://{config.origin.server}"),
            _main(config),
            "http {",
            _indent(_http(config, cache)),
            _indent(_server(config)),
            "}",
            "",
        ]
    )


def _indent(block: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in block.splitlines())


_HEADER = """\
# nginx edge for the Majlis origin {origin}, generated by `majlis edge-config`.
# Run it unprivileged from a folder PREFIX (relative paths below are relative to it):
#   nginx -p PREFIX -c PREFIX/nginx.conf -e stderr       # -t first to check it
# Reload after editing: kill -HUP "$(cat PREFIX/edge.pid)". Stop: kill -QUIT ... (graceful).
"""


def _main(config: EdgeConfig) -> str:
    workers = "auto" if config.workers is None else str(config.workers)
    # Every request goes through the regular-expression locations and maps below: compiled.
    return f"""\
pcre_jit on;
worker_processes {workers};
worker_rlimit_nofile {WORKER_OPEN_FILES};
pid edge.pid;
error_log error.log warn;

events {{
    worker_connections {WORKER_CONNECTIONS};
}}
"""


def _http(config: EdgeConfig, cache: str) -> str:
    lock = _seconds(config.hold_s + LOCK_MARGIN_S)
    return f"""\
default_type application/octet-stream;
server_tokens off;
# Every object is small (a part ~1 kB, a playlist a few kB): one read() of the cache file and
# one writev() of head and body cost less than sendfile() plus the TCP_CORK toggling of
# tcp_nopush around it (measured on an LL-HLS edge: about a fifth less CPU per request).
sendfile off;
tcp_nopush off;
tcp_nodelay on;
# Players keep one connection and reuse it for every part and playlist.
keepalive_timeout 30s;
keepalive_requests 10000;
client_header_timeout 10s;
client_body_timeout 10s;
send_timeout 10s;
reset_timedout_connection on;
client_max_body_size {MAX_BODY};
client_body_buffer_size 16k;
large_client_header_buffers 4 8k;
# Cache hits are files: keep their descriptors open. Only immutable media may use this:
# a playlist's cache file is replaced on every update and a cached descriptor would keep
# serving the old one (open_file_cache is switched off for playlists below).
open_file_cache max=10000 inactive=30s;
open_file_cache_valid 30s;
open_file_cache_min_uses 2;

# $msec (when the answer was sent) and $request_time (how long it took) show how long a
# request waited on another's cache fill.
log_format majlis_edge '$remote_addr [$time_local] $msec "$request" $status $body_bytes_sent '
                       '$request_time cache=$upstream_cache_status '
                       'origin=$upstream_response_time';
access_log access.log majlis_edge buffer=64k flush=2s;

# nginx creates only the last folder of each path: these sit right under the prefix.
client_body_temp_path tmp_body;
proxy_temp_path tmp_proxy;
fastcgi_temp_path tmp_fastcgi;
uwsgi_temp_path tmp_uwsgi;
scgi_temp_path tmp_scgi;
# Live media is small (a 213 ms part at 48 kbit/s is ~1.3 kB) and short-lived for an edge:
# 10 minutes unused and it goes. Fills are written inside the cache folder (renamed, never copied).
proxy_cache_path "{cache}" levels=1:2 keys_zone=majlis_live:32m max_size=2g
                 inactive=10m use_temp_path=off;

# The cache key of a playlist is its path plus the three LL-HLS query parameters, and the
# origin is sent exactly those: other parameters (cache busters) cannot split the cache,
# and a repeated parameter cannot make the key and the origin's answer disagree.
map $arg__HLS_msn $majlis_hls_msn {{
    "" "";
    default "_HLS_msn=$arg__HLS_msn";
}}
map $arg__HLS_part $majlis_hls_part {{
    "" "";
    default "&_HLS_part=$arg__HLS_part";
}}
map $arg__HLS_skip $majlis_hls_skip {{
    "" "";
    default "&_HLS_skip=$arg__HLS_skip";
}}

upstream majlis_origin {{
{_servers(config)}
    keepalive 64;
    keepalive_timeout 60s;
}}

# Upstream connections are kept alive (empty Connection header), except for a WebSocket
# handshake (the hosts' control socket), which is passed on as an upgrade.
map $http_upgrade $majlis_connection {{
    default upgrade;
    "" "";
}}
proxy_http_version 1.1;
proxy_set_header Upgrade $http_upgrade;
proxy_set_header Connection $majlis_connection;
proxy_set_header Host {config.origin.authority};
# The origin counts and limits listeners by address: it must list this edge as a trusted
# proxy (majlis serve --trusted-proxy) to read the listener's address from here.
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header X-Forwarded-Host $host;
proxy_connect_timeout 3s;
proxy_send_timeout 10s;
# Longer than the origin holds a blocking reload or a preload-hint part.
proxy_read_timeout {_seconds(config.hold_s + 2 * LOCK_MARGIN_S)};
{_ssl(config.origin)}
# Defaults for the cached locations below.
proxy_cache_methods GET HEAD;
proxy_cache_lock_timeout {lock};
proxy_cache_lock_age {lock};
# A cache fill goes on when the listener who started it leaves: others wait on its lock.
proxy_ignore_client_abort on;
proxy_cache_use_stale error timeout updating http_502 http_504;

"""


def _servers(config: EdgeConfig) -> str:
    if not config.more_origins:
        # One origin: never mark it failed, or a brief refusal would fail every request
        # for fail_timeout afterwards.
        return f"    server {config.origin.server} max_fails=0;"
    # Several nodes: a node that refused a connection is skipped for 2 s (the failed request
    # goes to the next one: proxy_next_upstream's default of error and timeout), so a dead
    # node costs one refused connection per worker per 2 s, not one per request.
    return "\n".join(
        f"    server {o.server} max_fails=1 fail_timeout=2s;"
        for o in (config.origin, *config.more_origins)
    )


def _ssl(origin: Origin) -> str:
    if origin.scheme != "https":
        return ""
    return f"proxy_ssl_server_name on;\nproxy_ssl_name {origin.host};\n"


def _server(config: EdgeConfig) -> str:
    scheme = config.origin.scheme
    return f"""\
server {{
    listen {config.listen} backlog=4096;
    add_header X-Cache-Status $upstream_cache_status always;

    # Playlists. The origin says how long each may be kept and the edge obeys it: a
    # blocking reload names a playlist version that never changes (max-age=6), the plain
    # live playlist changes with every part (max-age=1), the replay after the end lives 60 s
    # and the multivariant playlists (index.m3u8, steered.m3u8) 5 minutes.
    # proxy_cache_valid only covers answers without Cache-Control (errors), for a second: a
    # 404 (space not started) and a 503 (no part within the hold: the stream stalled), so the
    # listeners waiting on the lock get it at once instead of taking turns at the origin,
    # one hold each.
    location ~ "^/live/{_SPACE}/[a-z]+\\.m3u8$" {{
        proxy_cache majlis_live;
        proxy_cache_key "$uri?$majlis_hls_msn$majlis_hls_part$majlis_hls_skip";
        # N listeners asking for the same blocking reload: one origin request, held there.
        proxy_cache_lock on;
        proxy_cache_valid 404 503 1s;
        open_file_cache off;
        proxy_pass {scheme}://majlis_origin$uri?$majlis_hls_msn$majlis_hls_part$majlis_hls_skip;
    }}

    # Media: init, parts (a preload-hint part is held by the origin until it is written)
    # and segments. Immutable at the origin (max-age=1 year); the query is never part of
    # the object. Errors are not cached: a part asked for too early must not be a 404 for
    # everyone once it exists.
    location ~ "^/live/{_SPACE}/(init\\.mp4|p/[0-9]+\\.[0-9]+\\.m4s|s/[0-9]+\\.m4s)$" {{
        proxy_cache majlis_live;
        proxy_cache_key $uri;
        proxy_cache_lock on;
        proxy_pass {scheme}://majlis_origin$uri;
    }}

    # The content steering manifest (when the origin lists pathways): the same for every
    # player, kept as long as the origin says (max-age=30). The query players add
    # (_HLS_pathway, _HLS_throughput) does not change it: it is neither in the key nor sent on.
    location ~ "^/live/{_SPACE}/steering\\.json$" {{
        proxy_cache majlis_live;
        proxy_cache_key $uri;
        proxy_cache_lock on;
        proxy_pass {scheme}://majlis_origin$uri;
    }}

    # Room state (max-age=1 with an ETag) and listener sessions (POST: never cached).
    location /live/ {{
        proxy_cache majlis_live;
        proxy_cache_key $uri;
        proxy_cache_lock on;
        proxy_cache_revalidate on;
        proxy_pass {scheme}://majlis_origin;
    }}

    # Pages, API, WHIP and the control WebSocket: passed through, never cached. The origin
    # pings a control socket every 30 s, so an idle one outlives the read timeout.
    location / {{
        proxy_read_timeout 75s;
        proxy_pass {scheme}://majlis_origin;
    }}

    # Errors the edge itself makes, in the origin's JSON shape.
{_edge_errors()}
}}
"""


# Status, code and detail of the errors nginx makes itself (not the origin's, passed as-is).
_EDGE_ERRORS = (
    (502, "bad_gateway", "the edge could not reach the origin"),
    (504, "gateway_timeout", "the origin did not answer in time"),
    (413, "payload_too_large", f"request body over {MAX_BODY}B"),
)


def _edge_errors() -> str:
    lines: list[str] = []
    for status, code, detail in _EDGE_ERRORS:
        body = json.dumps({"error": code, "status": status, "detail": detail})
        lines += [
            f"    error_page {status} @edge_{status};",
            f"    location @edge_{status} {{",
            "        default_type application/json;",
            f"        return {status} '{body}';",
            "    }",
        ]
    return "\n".join(lines)
