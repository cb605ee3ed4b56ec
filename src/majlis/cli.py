"""`majlis` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from majlis.cluster.link import StoreDown
from majlis.config import (
    Settings,
    parse_addresses,
    parse_bitrate,
    parse_bounded,
    parse_node_url,
    parse_port_range,
    parse_rate,
    parse_redis_url,
    parse_seconds,
    stage_size,
)

# Flags of the HTTP edge's limits: (flag, Settings field, parser of its text).
_LIMIT_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--listener-rate", "listener_rate", "RATE/BURST per listener address (default 100/400)"),
    ("--listener-prefix-rate", "listener_prefix_rate", "per /24 or /48 (default 1000/4000)"),
    ("--api-rate", "api_rate", "RATE/BURST per address on WHIP and /api (default 10/60)"),
    ("--api-prefix-rate", "api_prefix_rate", "per /24 or /48 on WHIP and /api (default 50/300)"),
    ("--max-held-per-address", "max_held_per_address", "held blocking requests (default 64)"),
    (
        "--max-held-per-network",
        "max_held_per_network",
        "held blocking requests per IPv4 /24 or IPv6 /48 (default 128)",
    ),
    ("--max-held", "max_held", "held blocking requests in total (default 6000)"),
    ("--max-connections", "max_connections", "listener connections (default 8192)"),
    ("--max-connections-per-address", "max_connections_per_address", "(default 256)"),
    ("--speaker-connections", "speaker_connections", "reserved for WHIP/API (default 128)"),
    ("--header-timeout", "header_timeout", "seconds to send a request head (default 5)"),
    ("--idle-timeout", "idle_timeout", "seconds an idle keep-alive lasts (default 30)"),
    ("--min-body-rate", "min_body_rate", "bytes/s a body must average (default 4096)"),
    ("--max-url-bytes", "max_url_bytes", "request target length (default 4096)"),
    ("--max-query-bytes", "max_query_bytes", "query string length (default 1024)"),
    ("--max-header-bytes", "max_header_bytes", "one header line (default 8190)"),
    ("--max-headers", "max_headers", "header lines per request (default 64)"),
)


def _limit_value(field: str, text: str) -> object:
    if field.endswith("_rate") and field != "min_body_rate":
        return parse_rate(text)
    if field.endswith("_timeout"):
        return parse_seconds(field.replace("_", " "), text, 0.1, 3600)
    if field == "min_body_rate":
        return float(parse_bounded("minimum body rate", text, 0, 1 << 30))
    return parse_bounded(field.replace("_", " "), text, 1, 1 << 24)


def _limit_changes(args: argparse.Namespace) -> dict[str, object]:
    changes: dict[str, object] = {}
    if args.trusted_proxy:
        from majlis.guard.clients import parse_networks

        entries = parse_addresses(args.trusted_proxy)
        parse_networks(entries)  # refuse a bad block at start, not at the first request
        changes["trusted_proxies"] = entries
    if args.limit_exempt is not None:
        from majlis.guard.clients import parse_networks

        entries = () if args.limit_exempt == "none" else parse_addresses(args.limit_exempt)
        parse_networks(entries)
        changes["limit_exempt"] = entries
    for _, field, _ in _LIMIT_FLAGS:
        if (text := getattr(args, field)) is not None:
            changes[field] = _limit_value(field, text)
    return changes


def _add_limit_flags(s: argparse.ArgumentParser) -> None:
    g = s.add_argument_group("limits", "see docs/security.md for what each guards against")
    g.add_argument(
        "--trusted-proxy",
        metavar="CIDR[,CIDR]",
        help="proxies whose X-Forwarded-For is believed (default: none)",
    )
    g.add_argument(
        "--limit-exempt",
        metavar="CIDR[,CIDR]|none",
        help="clients free of per-address limits (default: 127.0.0.0/8,::1)",
    )
    for flag, field, help_text in _LIMIT_FLAGS:
        g.add_argument(flag, dest=field, metavar="N", help=help_text)


def _serve(args: argparse.Namespace) -> int:
    from majlis.app import App
    from majlis.http.server import serve

    settings = Settings().with_env()
    changes: dict[str, object] = {"host": args.host, "port": args.port, "data_dir": Path(args.data)}
    if args.ice_address:
        changes["ice_addresses"] = parse_addresses(args.ice_address)
    if args.ice_ports:
        changes["ice_port_range"] = parse_port_range(args.ice_ports)
    if args.aac_bitrate:
        changes["aac_bitrate"] = parse_bitrate(args.aac_bitrate)
    if args.part_frames:
        changes["part_frames"] = parse_bounded("part frames", args.part_frames, 3, 47)
    if args.segment_parts:
        changes["segment_parts"] = parse_bounded("segment parts", args.segment_parts, 1, 30)
    if args.stage_speakers:
        changes.update(stage_size(settings, args.stage_speakers))
    if args.redis:
        changes["redis_url"] = parse_redis_url(args.redis)
    if args.node_url:
        changes["node_url"] = parse_node_url(args.node_url)
    clustered = changes.get("redis_url") or settings.redis_url
    wildcard = args.host in ("0.0.0.0", "::")
    if clustered and wildcard and not (changes.get("node_url") or settings.node_url):
        raise ValueError(
            "with --redis and a wildcard --host, give --node-url: the URL the "
            "other nodes reach this one at"
        )
    if args.pathway:
        from majlis.edge.pathways import parse_pathways

        changes["pathways"] = parse_pathways(args.pathway)
    changes.update(_admission(args))
    changes.update(_limit_changes(args))
    settings = replace(settings, **changes)  # type: ignore[arg-type]
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(App(settings)))
    return 0


def _admission(args: argparse.Namespace) -> dict[str, object]:
    changes: dict[str, object] = {}
    if args.max_listeners is not None:
        changes["max_listeners"] = parse_bounded("max listeners", args.max_listeners, 0, 10**9)
    if args.attack_mode:
        changes["attack_mode"] = True
    if args.pow_difficulty is not None:
        changes["pow_difficulty"] = parse_bounded("PoW difficulty", args.pow_difficulty, 1, 32)
    if args.attack_threshold is not None:
        threshold = parse_bounded("attack threshold", args.attack_threshold, 0, 10**9)
        changes["attack_threshold"] = float(threshold)
    if args.attack_quiet is not None:
        changes["attack_quiet_s"] = float(
            parse_bounded("attack quiet", args.attack_quiet, 1, 86400)
        )
    return changes


def _add_admission(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--max-listeners", help="live listener sessions per node (default 20000; 0 = no limit)"
    )
    s.add_argument(
        "--attack-mode",
        action="store_true",
        help="start in attack mode (new listeners solve a proof of work)",
    )
    s.add_argument("--pow-difficulty", help="proof-of-work leading zero bits, 1-32 (default 16)")
    s.add_argument(
        "--attack-threshold",
        help="new-session requests per second that switch attack mode on (default 300; 0 = never)",
    )
    s.add_argument("--attack-quiet", help="quiet seconds before attack mode goes off (default 60)")


def _export(args: argparse.Namespace) -> int:
    from majlis.trust.export import Credentials, ProgressBar, export_space

    credentials = None
    if not args.no_sign:
        cert = args.cert or os.environ.get("MAJLIS_C2PA_CERT")
        key = args.key or os.environ.get("MAJLIS_C2PA_KEY")
        if not cert or not key:
            raise ValueError(
                "no C2PA signing certificate: pass --cert CERT.pem --key KEY.pem (or set "
                "MAJLIS_C2PA_CERT and MAJLIS_C2PA_KEY), or --no-sign for an unsigned file"
            )
        credentials = Credentials.load(Path(cert), Path(key))
    bar = ProgressBar(sys.stderr, "export")
    try:
        result = export_space(Path(args.data), args.space, Path(args.out), credentials, bar)
    finally:
        bar.finish()
    how = "signed (C2PA)" if result.signed else "unsigned"
    print(
        f"{result.path}: {result.segments} segments, {result.remuxed.duration:.2f} s, "
        f"{result.path.stat().st_size} bytes, {how}"
    )
    return 0


def _add_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("export", help="write an ended space's replay as one signed M4A")
    e.add_argument("space", help="space id")
    e.add_argument("out", help="output file, e.g. replay.m4a")
    e.add_argument("--data", default="var", help="the server's data folder (default ./var)")
    e.add_argument("--cert", help="C2PA certificate chain, PEM (default $MAJLIS_C2PA_CERT)")
    e.add_argument("--key", help="its private key, PEM (default $MAJLIS_C2PA_KEY)")
    e.add_argument("--no-sign", action="store_true", help="write the M4A without a manifest")
    e.set_defaults(func=_export)


def _key(args: argparse.Namespace) -> int:
    from majlis.trust.keys import KEY_FILE, load_or_create

    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    public = load_or_create(data / KEY_FILE).public
    print(f"key id:     {public.key_id}")
    print("algorithm:  Ed25519")
    print(f"public key: {public.base64}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from majlis.trust.verify import UNUSABLE, verify

    code, message = verify(args.target, args.key)
    print(message, file=sys.stderr if code == UNUSABLE else sys.stdout)
    return code


def _trust_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("key", help="print the server's public signing key (created if missing)")
    k.add_argument("--data", default="var", help="data folder (default ./var)")
    k.set_defaults(func=_key)
    v = sub.add_parser(
        "verify",
        help="prove a replay is unedited: exit 0 intact, 1 tampered, 2 cannot check",
    )
    v.add_argument(
        "target", help="replay URL (page, index.m3u8 or audio.m3u8) or a space's data folder"
    )
    v.add_argument(
        "--key",
        help="public key file or base64 (default: the server's /.well-known/majlis-signing-key)",
    )
    v.set_defaults(func=_verify)


def _audience(args: argparse.Namespace) -> int:
    from majlis.storage.events import events_path, export_events, read_events
    from majlis.trust.audience import compute, format_report

    if args.from_export:
        path = Path(args.from_export)
        if not path.is_file():
            raise ValueError(f"no such export file: {path}")
    elif args.space:
        path = events_path(Path(args.data), args.space)
        if not path.parent.is_dir():
            raise ValueError(f"no space {args.space!r} in the data folder {args.data}")
    else:
        raise ValueError("name a space, or give --from-export FILE")
    try:
        if args.export:
            count = export_events(path, Path(args.export))
            print(f"exported {count} events to {args.export}", file=sys.stderr)
        # A space nobody has listened to yet has no log: no events.
        events, bad = read_events(path) if path.exists() else ([], 0)
    except OSError as exc:
        raise ValueError(f"cannot read the event log: {exc}") from None
    if bad:
        print(f"skipped {bad} invalid lines of {path}", file=sys.stderr)
    report = compute(events)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        sys.stdout.write(format_report(report, str(path)))
    return 0


def _add_audience(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("audience", help="audience figures of a space, from its event log")
    a.add_argument("space", nargs="?", help="space id")
    a.add_argument("--data", default="var", help="the server's data folder (default ./var)")
    a.add_argument("--export", metavar="FILE", help="also copy the event log to FILE (JSON lines)")
    a.add_argument("--from-export", metavar="FILE", help="compute from an exported event log")
    a.add_argument("--json", action="store_true", help="print the figures as JSON")
    a.set_defaults(func=_audience)


def _edge_config(args: argparse.Namespace) -> int:
    from majlis.edge import nginxconf

    origins = [nginxconf.parse_origin(url) for url in args.origin]
    config = nginxconf.EdgeConfig(
        origin=origins[0],
        more_origins=tuple(origins[1:]),
        listen=nginxconf.parse_listen(args.listen),
        cache_dir=nginxconf.check_path(args.cache_dir),
        workers=parse_bounded("workers", args.workers, 1, 64) if args.workers else None,
        hold_s=nginxconf.parse_hold(args.hold),
    )
    sys.stdout.write(nginxconf.render(config))
    return 0


def _add_edge_config(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from majlis.edge.nginxconf import DEFAULT_CACHE_DIR, DEFAULT_HOLD_S, DEFAULT_LISTEN

    e = sub.add_parser("edge-config", help="print the nginx.conf of a caching edge")
    e.add_argument(
        "--origin",
        required=True,
        action="append",
        help="the origin's URL, e.g. http://10.0.0.5:8080; repeat it for each node of a cluster",
    )
    e.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE_DIR,
        help=f"cache and temp files, relative to nginx's -p prefix (default {DEFAULT_CACHE_DIR})",
    )
    e.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"PORT or ADDRESS:PORT (default {DEFAULT_LISTEN})"
    )
    e.add_argument("--workers", help="nginx worker processes (default: one per core)")
    e.add_argument(
        "--hold",
        default=str(DEFAULT_HOLD_S),
        help="longest the origin holds a blocking reload, in seconds: 3 target durations "
        f"(default {DEFAULT_HOLD_S:g})",
    )
    e.set_defaults(func=_edge_config)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="majlis", description="Live audio rooms server")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 = any)")
    s.add_argument(
        "--data", default="var", help="data folder: database and recordings (default ./var)"
    )
    s.add_argument(
        "--ice-address",
        help="comma-separated addresses to offer as ICE candidates (default: all interfaces)",
    )
    s.add_argument("--ice-ports", help="UDP port range for ICE, e.g. 40000-40100")
    s.add_argument("--aac-bitrate", help="AAC bitrate in bit/s, 32000-64000 (default 48000)")
    s.add_argument("--part-frames", help="AAC frames (21.3 ms each) per LL-HLS part (default 10)")
    s.add_argument("--segment-parts", help="parts per segment (default 5)")
    s.add_argument(
        "--stage-speakers", help="speakers on stage besides the host and co-hosts (default 10)"
    )
    s.add_argument(
        "--pathway",
        action="append",
        metavar="NAME=URL",
        help="an edge listeners may fetch media through, e.g. a=https://edge-a.example; "
        "repeat it, most preferred first (default: $MAJLIS_PATHWAYS, else none)",
    )
    _add_admission(s)
    c = s.add_argument_group("cluster", "several nodes sharing one Redis: see docs/scale.md")
    c.add_argument("--redis", metavar="URL", help="Redis URL, e.g. redis://10.0.0.9:6379/0")
    c.add_argument(
        "--node-url", metavar="URL", help="how the other nodes reach this one (default: listen URL)"
    )
    s.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    _add_limit_flags(s)
    s.set_defaults(func=_serve)
    _add_export(sub)
    _trust_commands(sub)
    _add_audience(sub)
    _add_edge_config(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ValueError as exc:
        print(f"majlis: {exc}", file=sys.stderr)
        return 2
    except StoreDown as exc:  # `serve --redis` and Redis never answered
        print(f"majlis: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
