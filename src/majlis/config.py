"""One settings tree for the whole server; every option is documented in docs/configure.md."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from majlis.edge import pathways as edge_pathways

# AAC-LC encodes 1024 samples per frame; at 48 kHz that is 21.33 ms.
AAC_FRAME_SAMPLES = 1024
SAMPLE_RATE = 48_000


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("var")
    # Addresses put in ICE host candidates. Empty: every non-loopback interface (aioice's
    # default). Set it to the public address behind NAT, or 127.0.0.1 for loopback tests.
    ice_addresses: tuple[str, ...] = ()
    # Inclusive UDP port range for ICE host candidates; (0, 0) lets the kernel choose.
    ice_port_range: tuple[int, int] = (0, 0)
    aac_bitrate: int = 48_000
    # 10 AAC frames = 213.3 ms parts, 5 parts = 1.067 s segments: see docs/configure.md for
    # the latency-versus-requests measurement behind this choice.
    part_frames: int = 10
    segment_parts: int = 5
    # Segments kept in the live playlist; the replay lists all of them.
    live_window_segments: int = 30
    # A speaker whose audio stops arriving for this long is dropped from the stage.
    speaker_stall_timeout: float = 5.0
    # WebRTC publishers per space: the host, max_cohosts co-hosts and stage_speakers speakers.
    max_speakers: int = 13
    # The stage: speakers besides the host and co-hosts, and co-hosts besides the host.
    stage_speakers: int = 10
    max_cohosts: int = 2
    # A control WebSocket that sends nothing for this long is closed (clients ping).
    control_idle_timeout: float = 120.0
    max_sdp_bytes: int = 64 * 1024
    max_json_bytes: int = 16 * 1024
    admin_token: str | None = None
    # -- limits at the HTTP edge: docs/security.md gives the reason for each default -------
    # Proxies (CIDR blocks) whose X-Forwarded-For is believed; nobody else's is.
    trusted_proxies: tuple[str, ...] = ()
    # Clients (CIDR blocks) that skip the per-address and per-network limits, not the totals:
    # the machine itself by default (monitoring, a local proxy, tests).
    limit_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # (requests per second, burst) per client address (IPv6: per /64) and per network
    # (IPv4 /24, IPv6 /48). A live LL-HLS player makes ~10 requests a second.
    listener_rate: tuple[float, float] = (100.0, 400.0)
    listener_prefix_rate: tuple[float, float] = (1000.0, 4000.0)
    api_rate: tuple[float, float] = (10.0, 60.0)
    api_prefix_rate: tuple[float, float] = (50.0, 300.0)
    # Blocking reloads and preload-hinted parts held at once, per address and in total.
    max_held_per_address: int = 64
    max_held_per_network: int = 128
    max_held: int = 6000
    # Listener connections in total and per address; connections reserved for the speaker
    # path (WHIP, the API, probes) on top of them.
    max_connections: int = 8192
    max_connections_per_address: int = 256
    speaker_connections: int = 128
    # Seconds for a whole request head; seconds an idle keep-alive connection stays open;
    # bytes per second a request body must average (after a 5 s grace).
    header_timeout: float = 5.0
    idle_timeout: float = 30.0
    min_body_rate: float = 4096.0
    max_url_bytes: int = 4096
    max_query_bytes: int = 1024
    max_header_bytes: int = 8190
    max_headers: int = 64
    # Listener capacity of this node in live listener sessions; 0 = no limit. Past it,
    # newcomers wait in line (docs/security.md, "Admission control and attack mode").
    max_listeners: int = 20_000
    # Attack mode: on from the start; the proof of work's leading zero bits; the new-session
    # requests per second that switch it on by itself (0 = never); the quiet seconds after
    # which it goes off again.
    attack_mode: bool = False
    pow_difficulty: int = 16
    attack_threshold: float = 300.0
    attack_quiet_s: float = 60.0
    # Nodes sharing one Redis (docs/scale.md): its URL, and the URL the other nodes reach
    # this one at (default: http://HOST:PORT as listened on).
    redis_url: str | None = None
    node_url: str | None = None
    # Edges a listener may fetch media through, in order of preference (docs/scale.md,
    # "Listener failover between edges"). Empty: no steered playlist.
    pathways: tuple[edge_pathways.Pathway, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def part_duration(self) -> float:
        return self.part_frames * AAC_FRAME_SAMPLES / SAMPLE_RATE

    @property
    def segment_duration(self) -> float:
        return self.part_duration * self.segment_parts

    def with_env(self) -> Settings:
        """Apply MAJLIS_* environment variables (used by `make run` and deployments)."""
        env = os.environ
        changes: dict[str, object] = {}
        if token := env.get("MAJLIS_ADMIN_TOKEN"):
            changes["admin_token"] = token
        if redis := env.get("MAJLIS_REDIS_URL"):
            changes["redis_url"] = parse_redis_url(redis)
        if node := env.get("MAJLIS_NODE_URL"):
            changes["node_url"] = parse_node_url(node)
        if addrs := env.get("MAJLIS_ICE_ADDRESSES"):
            changes["ice_addresses"] = parse_addresses(addrs)
        if ports := env.get("MAJLIS_ICE_PORTS"):
            changes["ice_port_range"] = parse_port_range(ports)
        if rate := env.get("MAJLIS_AAC_BITRATE"):
            changes["aac_bitrate"] = parse_bitrate(rate)
        if frames := env.get("MAJLIS_PART_FRAMES"):
            changes["part_frames"] = parse_bounded("part frames", frames, 3, 47)
        if stage := env.get("MAJLIS_STAGE_SPEAKERS"):
            changes.update(stage_size(self, stage))
        if idle := env.get("MAJLIS_CONTROL_IDLE_S"):
            changes["control_idle_timeout"] = parse_seconds("control idle timeout", idle, 1, 3600)
        if parts := env.get("MAJLIS_SEGMENT_PARTS"):
            changes["segment_parts"] = parse_bounded("segment parts", parts, 1, 30)
        if pathways := env.get(edge_pathways.ENV):
            changes["pathways"] = edge_pathways.parse_env(pathways)
        return replace(self, **changes)  # type: ignore[arg-type]


def stage_size(settings: Settings, text: str) -> dict[str, object]:
    """The stage's speakers, and the publishers that allows: host + co-hosts + speakers."""
    speakers = parse_bounded("stage speakers", text, 1, 50)
    return {"stage_speakers": speakers, "max_speakers": 1 + settings.max_cohosts + speakers}


def parse_redis_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")) or len(text) > 512:
        raise ValueError(f"a Redis URL looks like redis://host:6379/0, got {text[:80]!r}")
    return text


def parse_node_url(text: str) -> str:
    rest = text.removeprefix("http://").removeprefix("https://")
    if rest == text or not rest or "/" in rest.rstrip("/") or len(text) > 256:
        raise ValueError(
            f"a node URL is scheme, host and port only, e.g. http://10.0.0.5:8080, got {text!r}"
        )
    return text.rstrip("/")


def parse_addresses(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(",") if a.strip())


def parse_port_range(text: str) -> tuple[int, int]:
    try:
        low_s, high_s = text.split("-", 1)
        low, high = int(low_s), int(high_s)
    except ValueError:
        raise ValueError(f"port range must look like 40000-40100, got {text!r}") from None
    if not (1024 <= low <= high <= 65535):
        raise ValueError(f"port range {text!r} must lie within 1024-65535, low <= high")
    return low, high


def parse_bitrate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"AAC bitrate must be an integer, got {text!r}") from None
    if not 32_000 <= value <= 64_000:
        raise ValueError(f"AAC bitrate must be 32000-64000 bit/s, got {value}")
    return value


def parse_rate(text: str) -> tuple[float, float]:
    """`RATE/BURST` (requests per second, burst size), e.g. `100/400`."""
    try:
        rate_s, burst_s = text.split("/", 1)
        rate, burst = float(rate_s), float(burst_s)
    except ValueError:
        raise ValueError(
            f"a rate must look like 100/400 (per second/burst), got {text!r}"
        ) from None
    if not (0 < rate < 1e9 and 1 <= burst < 1e9):
        raise ValueError(f"rate {text!r} needs a rate > 0 and a burst >= 1")
    return rate, burst


def parse_seconds(what: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number of seconds, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be {low:g}-{high:g} s, got {text}")
    return value


def parse_bounded(what: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be {low}-{high}, got {value}")
    return value
