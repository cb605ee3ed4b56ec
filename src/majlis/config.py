"""One settings tree for the whole server; every option is documented in docs/configure.md."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

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
    max_speakers: int = 12
    max_sdp_bytes: int = 64 * 1024
    max_json_bytes: int = 16 * 1024
    admin_token: str | None = None
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
        if addrs := env.get("MAJLIS_ICE_ADDRESSES"):
            changes["ice_addresses"] = parse_addresses(addrs)
        if ports := env.get("MAJLIS_ICE_PORTS"):
            changes["ice_port_range"] = parse_port_range(ports)
        if rate := env.get("MAJLIS_AAC_BITRATE"):
            changes["aac_bitrate"] = parse_bitrate(rate)
        if frames := env.get("MAJLIS_PART_FRAMES"):
            changes["part_frames"] = parse_bounded("part frames", frames, 3, 47)
        if parts := env.get("MAJLIS_SEGMENT_PARTS"):
            changes["segment_parts"] = parse_bounded("segment parts", parts, 1, 30)
        return replace(self, **changes)  # type: ignore[arg-type]


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


def parse_bounded(what: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be {low}-{high}, got {value}")
    return value
